package securesession

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/tickets"
)

// server is a server's sessions, one per client, sharing one identity
// (bob's key) and one ticket ring, as Config.Tickets recommends.
type server struct {
	clock  *clock
	lookup LookupFunc
	bobKey handshake.PrivateKey
	ring   *tickets.Ring
	keys   map[string]handshake.PrivateKey // the clients' keys
}

func newServer(t testing.TB, clients ...string) *server {
	t.Helper()
	sv := &server{clock: &clock{now: t0}, bobKey: keys(t), keys: map[string]handshake.PrivateKey{}}
	dir := map[string]handshake.PeerInfo{"bob": {PublicKey: sv.bobKey.PublicKey()}}
	for _, id := range clients {
		sv.keys[id] = keys(t)
		dir[id] = handshake.PeerInfo{PublicKey: sv.keys[id].PublicKey()}
	}
	sv.lookup = func(id string) (handshake.PeerInfo, error) {
		if info, ok := dir[id]; ok {
			return info, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	}
	sv.ring = tickets.NewRing(tickets.Options{Now: sv.clock.Now})
	return sv
}

// session makes one of the server's sessions (waiting for its client).
func (sv *server) session(t testing.TB) *Session {
	t.Helper()
	s, err := New(Config{PeerID: "bob", PrivateKey: sv.bobKey, Peers: sv.lookup, Tickets: sv.ring, Now: sv.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// client makes id's session and connects it to srv (full handshake; the
// client then holds a ticket).
func (sv *server) client(t testing.TB, id string, srv *Session) *Session {
	t.Helper()
	c, err := New(Config{PeerID: id, PrivateKey: sv.keys[id], Peers: sv.lookup, Now: sv.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, srv, c, [][]byte{first})
	if !c.Established() || c.currentPeer().Status(sv.clock.now).Ticket == nil {
		t.Fatalf("%s: not established with a ticket after the handshake", id)
	}
	return c
}

// resumption makes c rekey and returns its message 5.
func (sv *server) resumption(t testing.TB, c, srv *Session) []byte {
	t.Helper()
	sv.clock.now = sv.clock.now.Add(rekey.DefaultPolicy().RekeyAfterTime + time.Second)
	mustUnwrap(t, srv, mustWrap(t, c, "old"), "old")
	out := c.Tick()
	if len(out) != 1 || out[0][0] != handshake.MessageTypeResumptionInitiation {
		t.Fatalf("want one resumption message, got %d messages", len(out))
	}
	return out[0]
}

// An on-path attacker steers alice's resumption to the server's session
// with carol (or forges one from it). That session must refuse it, and must not spend the ticket
// doing so: it used to record the ticket as used before finding that the
// resumption was not its peer's, so alice's own resumption then failed as
// a reused ticket and cost her a full handshake. A true replay of the
// message, once alice resumed, is still refused as a reused ticket.
func TestSteeredResumptionDoesNotSpendTicket(t *testing.T) {
	sv := newServer(t, "alice", "carol")
	bobA, bobC := sv.session(t), sv.session(t)
	alice := sv.client(t, "alice", bobA)
	sv.client(t, "carol", bobC)
	m5 := sv.resumption(t, alice, bobA)

	// A forged copy (its Noise message altered, mac1 recomputed, as
	// anyone who knows bob's public key can) does not authenticate: it
	// must not spend the ticket either.
	forged := append([]byte(nil), m5...)
	forged[len(forged)-2*16-1] ^= 1 // last byte of the Noise message's tag
	handshake.NewCookieGenerator(sv.bobKey.PublicKey(), sv.clock.Now).AddMACs(forged)
	if _, err := bobA.Unwrap(forged); !errors.Is(err, handshake.ErrDecrypt) {
		t.Fatalf("forged resumption: %v, want ErrDecrypt", err)
	}

	res, err := bobC.Unwrap(m5)
	if !errors.Is(err, ErrOtherPeer) || len(res.Send) != 0 {
		t.Fatalf("alice's resumption at carol's session: %v, %d messages back; want ErrOtherPeer and no answer", err, len(res.Send))
	}
	// The refusal names what was refused: a resumption, not an initiation.
	if msg := err.Error(); !strings.Contains(msg, `resumption from "alice", this session is with "carol"`) || strings.Contains(msg, "initiation") {
		t.Fatalf("alice's resumption at carol's session: %q; want it named a resumption from alice", msg)
	}
	if bobC.PeerID() != "carol" {
		t.Fatalf("carol's session is now with %q", bobC.PeerID())
	}

	res, err = bobA.Unwrap(m5)
	if err != nil {
		t.Fatalf("alice's resumption at her own session after the steered copy: %v (the ticket was spent)", err)
	}
	deliver(t, alice, bobA, res.Send)
	if _, resumed := alice.Handshakes(); resumed != 1 {
		t.Fatalf("alice counts %d resumed handshakes, want 1", resumed)
	}
	mustUnwrap(t, alice, mustWrap(t, bobA, "resumed"), "resumed")

	if _, err := sv.session(t).Unwrap(m5); !errors.Is(err, handshake.ErrTicketReused) {
		t.Fatalf("replay of the used resumption at another session: %v, want ErrTicketReused", err)
	}
}

// A ticket resumes one session even when copies of its message 5 reach
// many sessions of the server at once: the check before the ticket is
// spent must not open a window in which two of them both take it.
func TestConcurrentResumptionsTakeTicketOnce(t *testing.T) {
	sv := newServer(t, "alice")
	bobA := sv.session(t)
	alice := sv.client(t, "alice", bobA)
	m5 := sv.resumption(t, alice, bobA)

	const n = 8
	targets := []*Session{bobA}
	for range n - 1 {
		targets = append(targets, sv.session(t))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Unwrap(append([]byte(nil), m5...))
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, handshake.ErrTicketReused):
			t.Errorf("session %d: %v, want success or ErrTicketReused", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d sessions took the ticket, want exactly 1", ok)
	}
}
