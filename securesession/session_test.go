package securesession

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/tickets"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// pair is two buffer-API sessions, alice (initiator) and bob, on one fake clock.
type pair struct {
	clock      *clock
	alice, bob *Session
	aliceKey   handshake.PrivateKey
	bobKey     handshake.PrivateKey
}

func keys(t testing.TB) handshake.PrivateKey {
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPair(t testing.TB, policy rekey.Policy) *pair {
	t.Helper()
	p := &pair{clock: &clock{now: t0}, aliceKey: keys(t), bobKey: keys(t)}
	directory := map[string]handshake.PeerInfo{
		"alice": {PublicKey: p.aliceKey.PublicKey()},
		"bob":   {PublicKey: p.bobKey.PublicKey()},
	}
	lookup := LookupFunc(func(id string) (handshake.PeerInfo, error) {
		if info, ok := directory[id]; ok {
			return info, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	})
	var err error
	p.alice, err = New(Config{PeerID: "alice", PrivateKey: p.aliceKey, Peers: lookup, Policy: policy, Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	p.bob, err = New(Config{PeerID: "bob", PrivateKey: p.bobKey, Peers: lookup, Policy: policy, Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deliver hands each message to the other side and returns everything that
// came back, recursively, until both sides are quiet.
func deliver(t testing.TB, to, from *Session, msgs [][]byte) {
	t.Helper()
	for len(msgs) > 0 {
		var back [][]byte
		for _, m := range msgs {
			res, err := to.Unwrap(m)
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}
			back = append(back, res.Send...)
		}
		msgs = back
		to, from = from, to
	}
}

func (p *pair) connect(t testing.TB) {
	t.Helper()
	first, err := p.alice.Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, p.bob, p.alice, [][]byte{first})
	if !p.alice.Established() || !p.bob.Established() {
		t.Fatal("not established after the handshake")
	}
	if p.alice.SessionID() != p.bob.SessionID() || p.alice.SessionID() == [32]byte{} {
		t.Fatal("session IDs differ")
	}
	if p.alice.PeerID() != "bob" || p.bob.PeerID() != "alice" {
		t.Fatalf("peer IDs: %q, %q", p.alice.PeerID(), p.bob.PeerID())
	}
}

func mustWrap(t testing.TB, s *Session, msg string) []byte {
	t.Helper()
	out, err := s.Wrap([]byte(msg))
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return out
}

func mustUnwrap(t testing.TB, s *Session, msg []byte, want string) {
	t.Helper()
	res, err := s.Unwrap(msg)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if string(res.Data) != want {
		t.Fatalf("got %q, want %q", res.Data, want)
	}
}

func TestHandshakeDataBothWaysAndRekeys(t *testing.T) {
	policy := rekey.DefaultPolicy()
	p := newPair(t, policy)
	if _, err := p.alice.Wrap([]byte("early")); !errors.Is(err, ErrNotEstablished) {
		t.Fatalf("Wrap before Connect: %v, want ErrNotEstablished", err)
	}
	p.connect(t)
	mustUnwrap(t, p.bob, mustWrap(t, p.alice, "hello bob"), "hello bob")
	mustUnwrap(t, p.alice, mustWrap(t, p.bob, "hello alice"), "hello alice")
	mustUnwrap(t, p.bob, mustWrap(t, p.alice, ""), "") // an empty message is a message

	sessions := map[[32]byte]bool{p.alice.SessionID(): true}
	for i := range 5 {
		p.clock.now = p.clock.now.Add(policy.RekeyAfterTime + time.Second)
		// The initiator rekeys on time: sending under an old key asks for
		// a handshake, which Tick (or the next Wrap's outbox) hands out.
		msg := mustWrap(t, p.alice, fmt.Sprintf("old key %d", i))
		mustUnwrap(t, p.bob, msg, fmt.Sprintf("old key %d", i))
		out := p.alice.Tick()
		if len(out) == 0 {
			t.Fatalf("rekey %d: no initiation due", i)
		}
		deliver(t, p.bob, p.alice, out)
		mustUnwrap(t, p.bob, mustWrap(t, p.alice, "new key"), "new key")
		mustUnwrap(t, p.alice, mustWrap(t, p.bob, "new key back"), "new key back")
		id := p.alice.SessionID()
		if sessions[id] || id != p.bob.SessionID() {
			t.Fatalf("rekey %d: session not renewed on both sides", i)
		}
		sessions[id] = true
	}
}

func TestLossReorderingAndReplay(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.connect(t)
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, mustWrap(t, p.alice, fmt.Sprint(i)))
	}
	// 3 and 7 are lost; the rest arrive in reverse order.
	for i := 9; i >= 0; i-- {
		if i == 3 || i == 7 {
			continue
		}
		mustUnwrap(t, p.bob, msgs[i], fmt.Sprint(i))
	}
	for _, i := range []int{0, 5, 9} {
		if _, err := p.bob.Unwrap(msgs[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of %d: %v, want ErrReplay", i, err)
		}
	}
	mustUnwrap(t, p.bob, msgs[7], "7") // late, still inside the window
	forged := append([]byte(nil), msgs[3]...)
	forged[len(forged)-1] ^= 1
	if _, err := p.bob.Unwrap(forged); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged message: %v, want ErrAuth", err)
	}
	mustUnwrap(t, p.bob, msgs[3], "3") // the forgery did not burn the counter
}

// A message under a key past reject_after is ErrKeyExpired, not ErrReplay:
// an embedder counting refusals tells a late message from an attack.
func TestExpiredKeyIsNotReplay(t *testing.T) {
	policy := rekey.DefaultPolicy()
	p := newPair(t, policy)
	p.connect(t)
	late := mustWrap(t, p.alice, "late")
	seen := mustWrap(t, p.alice, "seen")
	mustUnwrap(t, p.bob, seen, "seen")
	if _, err := p.bob.Unwrap(seen); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v, want ErrReplay", err)
	}
	p.clock.now = p.clock.now.Add(policy.RejectAfterTime)
	if _, err := p.bob.Unwrap(late); !errors.Is(err, ErrKeyExpired) || errors.Is(err, ErrReplay) {
		t.Fatalf("message under an expired key: %v, want ErrKeyExpired", err)
	}
}

func TestWrongKeyAndUnknownPeerRefused(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	// mallory claims to be alice with another key.
	mallory, err := New(Config{PeerID: "alice", PrivateKey: keys(t), Now: p.clock.Now,
		Peers: LookupFunc(func(string) (handshake.PeerInfo, error) {
			return handshake.PeerInfo{PublicKey: p.bobKey.PublicKey()}, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	first, err := mallory.Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.bob.Unwrap(first); !errors.Is(err, handshake.ErrKeyMismatch) {
		t.Fatalf("wrong key: %v, want ErrKeyMismatch", err)
	}
	stranger, _ := New(Config{PeerID: "eve", PrivateKey: keys(t), Now: p.clock.Now,
		Peers: LookupFunc(func(string) (handshake.PeerInfo, error) {
			return handshake.PeerInfo{PublicKey: p.bobKey.PublicKey()}, nil
		})})
	first, _ = stranger.Connect("bob")
	if _, err := p.bob.Unwrap(first); !errors.Is(err, handshake.ErrUnknownPeer) {
		t.Fatalf("unknown peer: %v, want ErrUnknownPeer", err)
	}
	if p.bob.Established() || p.bob.PeerID() != "" {
		t.Fatal("a refused initiation left a session behind")
	}
	if _, err := p.alice.Connect("carol"); !errors.Is(err, handshake.ErrUnknownPeer) {
		t.Fatalf("Connect to an unknown peer: %v", err)
	}
	p.connect(t) // the real alice still gets in
}

func TestRetryThenEstablish(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	if _, err := p.alice.Connect("bob"); err != nil { // lost
		t.Fatal(err)
	}
	if out := p.alice.Tick(); len(out) != 0 {
		t.Fatal("a retry before the retry interval")
	}
	p.clock.now = p.clock.now.Add(6 * time.Second)
	out := p.alice.Tick()
	if len(out) != 1 {
		t.Fatalf("%d messages due after the retry interval, want one initiation", len(out))
	}
	deliver(t, p.bob, p.alice, out)
	if !p.alice.Established() || !p.bob.Established() {
		t.Fatal("the retry did not establish")
	}
}

func TestPayloadIPOnlyCarriesIP(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.alice.cfg.Payload, p.bob.cfg.Payload = PayloadIP, PayloadIP
	p.connect(t)
	if _, err := p.alice.Wrap([]byte("not ip")); !errors.Is(err, ErrNotIP) {
		t.Fatalf("Wrap of non-IP: %v", err)
	}
	pkt := make([]byte, 20)
	pkt[0] = 0x45
	res, err := p.bob.Unwrap(mustWrapBytes(t, p.alice, pkt))
	if err != nil || !bytes.Equal(res.Data, pkt) {
		t.Fatalf("IP packet: %v, %x", err, res.Data)
	}
}

func mustWrapBytes(t testing.TB, s *Session, b []byte) []byte {
	t.Helper()
	out, err := s.Wrap(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCloseZeroesKeys(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.connect(t)
	msg := mustWrap(t, p.alice, "x")
	p.bob.Close()
	if p.bob.Established() {
		t.Fatal("established after Close")
	}
	if _, err := p.bob.Unwrap(msg); err == nil {
		t.Fatal("a closed session opened a message")
	}
}

// With a ticket ring on the responder, the initiator's rekeys are
// resumptions: one round trip, no static-key work, a fresh session.
func TestRekeysResumeWithTickets(t *testing.T) {
	policy := rekey.DefaultPolicy()
	p := newPair(t, policy)
	p.bob.host.SetTickets(tickets.NewRing(tickets.Options{Now: p.clock.Now}), true, 24*time.Hour)
	p.connect(t)
	ids := map[[32]byte]bool{p.alice.SessionID(): true}
	for i := 1; i <= 3; i++ {
		p.clock.now = p.clock.now.Add(policy.RekeyAfterTime + time.Second)
		mustUnwrap(t, p.bob, mustWrap(t, p.alice, "old"), "old")
		out := p.alice.Tick()
		if len(out) != 1 || out[0][0] != handshake.MessageTypeResumptionInitiation {
			t.Fatalf("rekey %d: want one resumption message, got %d messages", i, len(out))
		}
		deliver(t, p.bob, p.alice, out)
		if total, resumed := p.alice.Handshakes(); resumed != uint64(i) || total != uint64(i+1) {
			t.Fatalf("rekey %d: alice counts %d handshakes, %d resumed", i, total, resumed)
		}
		if _, resumed := p.bob.Handshakes(); resumed != uint64(i) {
			t.Fatalf("rekey %d: bob counts %d resumed", i, resumed)
		}
		if ids[p.alice.SessionID()] || p.alice.SessionID() != p.bob.SessionID() {
			t.Fatalf("rekey %d: not a fresh shared session", i)
		}
		ids[p.alice.SessionID()] = true
		mustUnwrap(t, p.alice, mustWrap(t, p.bob, "new"), "new")
	}
}

// MaxMessage bounds every application message, IP packets too: a larger
// one would make a data message no UDP datagram or frame can carry.
func TestPayloadIPRefusesOversizedPackets(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.alice.cfg.Payload, p.bob.cfg.Payload = PayloadIP, PayloadIP
	p.connect(t)
	pkt := make([]byte, MaxMessage+1)
	pkt[0] = 0x45
	if out, err := p.alice.Wrap(pkt); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Wrap of a %d-byte IP packet: %d bytes out, %v; want ErrTooLarge", len(pkt), len(out), err)
	}
	out, err := p.alice.Wrap(pkt[:MaxMessage])
	if err != nil {
		t.Fatalf("Wrap of a %d-byte IP packet: %v", MaxMessage, err)
	}
	if err := WriteFrame(io.Discard, out); err != nil {
		t.Fatalf("the largest IP packet does not fit a frame: %v", err)
	}
}

// The Peers lookup is the caller's code and may use the Session (to log
// what it is asked, say). The responder's first initiation called it with
// the Session's lock held, so any such call deadlocked Unwrap.
func TestPeerLookupMayCallBackIntoSession(t *testing.T) {
	aliceKey, bobKey := keys(t), keys(t)
	var bob *Session
	lookup := LookupFunc(func(id string) (handshake.PeerInfo, error) {
		if bob != nil {
			_ = bob.PeerID()
			_ = bob.Established()
		}
		switch id {
		case "alice":
			return handshake.PeerInfo{PublicKey: aliceKey.PublicKey()}, nil
		case "bob":
			return handshake.PeerInfo{PublicKey: bobKey.PublicKey()}, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	})
	alice, err := New(Config{PeerID: "alice", PrivateKey: aliceKey, Peers: lookup})
	if err != nil {
		t.Fatal(err)
	}
	first, err := alice.Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	if bob, err = New(Config{PeerID: "bob", PrivateKey: bobKey, Peers: lookup}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := bob.Unwrap(first); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Unwrap of the initiation: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Unwrap deadlocked: the lookup ran under the Session's lock")
	}
	if bob.PeerID() != "alice" {
		t.Fatalf("bob's peer is %q", bob.PeerID())
	}
}

// A new ticket that arrives after a newer session replaced the one it was
// issued for (a rekey overtook it) is stale: the core discards it and
// Unwrap reports nothing, as the daemon lets it go uncounted. It used to
// be reported as ErrMalformed. The newer session's ticket is still taken,
// and a control message that does not parse is still malformed, with an
// error that wraps the package's sentinel.
func TestStaleTicketIsNotMalformed(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.bob.host.SetTickets(tickets.NewRing(tickets.Options{Now: p.clock.Now}), true, 24*time.Hour)
	handshakeOnce := func() (ticket []byte) {
		first, err := p.alice.Connect("bob")
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.bob.Unwrap(first)
		if err != nil {
			t.Fatal(err)
		}
		res, err = p.alice.Unwrap(res.Send[0])
		if err != nil {
			t.Fatal(err)
		}
		res, err = p.bob.Unwrap(res.Send[0]) // alice's confirmation: bob sends a ticket
		if err != nil || len(res.Send) != 1 {
			t.Fatalf("confirmation: %v, %d messages back, want the ticket", err, len(res.Send))
		}
		return res.Send[0]
	}
	stale := handshakeOnce()
	p.clock.now = p.clock.now.Add(10 * time.Second)
	fresh := handshakeOnce() // a newer session before the first ticket arrived
	res, err := p.alice.Unwrap(stale)
	if err != nil || res.Data != nil || len(res.Send) != 0 {
		t.Fatalf("stale ticket: %v, data %q, %d messages back; want it discarded quietly", err, res.Data, len(res.Send))
	}
	if st := p.alice.currentPeer().Status(p.clock.now); st.Ticket != nil {
		t.Fatal("the stale ticket was kept")
	}
	if _, err := p.alice.Unwrap(fresh); err != nil {
		t.Fatalf("the newer session's ticket: %v", err)
	}
	if st := p.alice.currentPeer().Status(p.clock.now); st.Ticket == nil {
		t.Fatal("the newer session's ticket was not kept")
	}

	cut, err := p.bob.seal(nil, []byte{handshake.ControlMarker, 1, 0}, sealControl)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.alice.Unwrap(cut)
	if !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "securesession: ") {
		t.Fatalf("a cut control message: %v, want an ErrMalformed", err)
	}
}

// A Payload that is neither PayloadMessages nor PayloadIP made a Session
// that sealed messages untagged and refused every one it received as
// malformed: two such sessions handshook and then delivered nothing. New
// refuses it instead, naming the field.
func TestNewRefusesUnknownPayload(t *testing.T) {
	key := keys(t)
	_, err := New(Config{PeerID: "alice", PrivateKey: key, Payload: PayloadIP + 1,
		Peers: LookupFunc(func(string) (handshake.PeerInfo, error) { return handshake.PeerInfo{}, handshake.ErrUnknownPeer })})
	if err == nil || !strings.Contains(err.Error(), "Config.Payload") {
		t.Fatalf("New with Payload %d: %v, want a refusal naming Config.Payload", PayloadIP+1, err)
	}
}

// UnwrapTo into the buffer the message arrived in (dst and msg from the
// same array, as a receive loop reuses one buffer) is the natural
// zero-copy call, and its doc does not forbid it. It panicked with
// "invalid buffer overlap" from the AEAD as soon as the message was longer
// than the header (short ones happened not to overlap), in the caller's
// goroutine. Now it opens in place: the data lands at the start of dst.
func TestUnwrapToInTheMessagesOwnBuffer(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.connect(t)
	want := bytes.Repeat([]byte("in place "), 150)
	for name, at := range map[string]int{"buffer start": 0, "inside the header": 8, "at the ciphertext": headerLen, "inside the ciphertext": headerLen + 7} {
		buf := make([]byte, 2000)
		n := copy(buf, mustWrapBytes(t, p.alice, want))
		res, err := p.bob.UnwrapTo(buf[at:], buf[:n])
		if err != nil || !bytes.Equal(res.Data, want) {
			t.Fatalf("%s: UnwrapTo gave %d bytes, %v; want the %d sent", name, len(res.Data), err, len(want))
		}
	}
}
