package hsrate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/cputimer"
	"stunnel/rekey"
	"stunnel/session"
	"stunnel/tickets"
)

// lookup is the responder's configured peers, as the config backs them.
type lookup map[string]handshake.PeerInfo

func (l lookup) LookupPeer(id []byte) (handshake.PeerInfo, error) {
	if p, ok := l[string(id)]; ok {
		return p, nil
	}
	return handshake.PeerInfo{}, handshake.ErrUnknownPeer
}

// stFixture is a stunnel responder ("hub") with configured peers, as the
// daemon holds it (session.Host, one session.Peer per peer, an index
// registry, the ticket ring), and the initiators' handshake configs.
type stFixture struct {
	hub     handshake.PeerInfo
	host    *session.Host
	reg     *session.MapRegistry
	peers   map[string]*session.Peer
	checker *handshake.CookieChecker
	gen     *handshake.CookieGenerator // initiators' MACs toward the hub
	ring    *tickets.Ring
	inits   [identities]*handshake.Config
	// For resumptions, per identity: the initiator's and the hub's session
	// of one full handshake, from which fresh tickets are issued untimed.
	sc, sg [identities]*handshake.Session
	turns  turns
}

func newSTFixture(b *testing.B, withTickets bool) *stFixture {
	b.Helper()
	hubKey, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	f := &stFixture{
		hub:   handshake.PeerInfo{PublicKey: hubKey.PublicKey(), ID: "hub"},
		reg:   session.NewMapRegistry(),
		peers: make(map[string]*session.Peer, configured),
		// The used-ticket cache must hold every resumption of the run
		// (the daemon's default bound is 65,536).
		ring: tickets.NewRing(tickets.Options{MaxUsed: 1 << 22}),
	}
	b.Cleanup(f.ring.Close)
	conf := lookup{}
	hubCfg := &handshake.Config{PeerID: []byte("hub"), PrivateKey: hubKey, Peers: conf}
	f.host = session.NewHost(hubCfg, rekey.DefaultPolicy())
	if withTickets {
		f.host.SetTickets(f.ring, false, 0)
	}
	f.checker = handshake.NewCookieChecker(f.hub.PublicKey, nil, nil)
	f.gen = handshake.NewCookieGenerator(f.hub.PublicKey, nil)
	hubInConf := lookup{"hub": f.hub}
	for i := range configured {
		k, err := handshake.GeneratePrivateKey(nil)
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("peer-%04d", i)
		conf[id] = handshake.PeerInfo{PublicKey: k.PublicKey(), ID: id}
		f.peers[id] = f.host.NewPeer(session.PeerConfig{ID: id, PublicKey: k.PublicKey()}, f.reg)
		if i < identities {
			f.inits[i] = &handshake.Config{PeerID: []byte(id), PrivateKey: k, Peers: hubInConf}
		}
	}
	return f
}

// fullAnswer is the responder's work for message 1, as the daemon's
// handshake worker does it after its DoS gates let the message through.
func (f *stFixture) fullAnswer(msg []byte) error {
	if !f.checker.CheckMAC1(msg) {
		return errors.New("stunnel: mac1 refused")
	}
	idx := f.reg.Reserve()
	resp, sess, err := f.host.ConsumeInitiation(msg, idx)
	if err != nil || len(resp) == 0 {
		f.reg.Release(idx)
		return fmt.Errorf("stunnel: initiation refused: %w", err)
	}
	return f.peers[sess.PeerID].Accept(sess, idx, time.Now())
}

// resumedAnswer is the responder's work for message 5: mac1, open and spend
// the ticket, message 6, the keypair, and the next ticket (AcceptResumed).
func (f *stFixture) resumedAnswer(msg []byte) error {
	if !f.checker.CheckMAC1(msg) {
		return errors.New("stunnel: mac1 refused")
	}
	idx := f.reg.Reserve()
	resp, sess, st, err := f.host.ConsumeResumption(msg, idx)
	if err != nil || len(resp) == 0 {
		f.reg.Release(idx)
		return fmt.Errorf("stunnel: resumption refused: %w", err)
	}
	return f.peers[sess.PeerID].AcceptResumed(sess, st, idx, time.Now())
}

func (f *stFixture) initiation(b *testing.B, id int) []byte {
	in, err := handshake.NewInitiation(f.inits[id], f.hub, uint32(id+1))
	if err != nil {
		b.Fatal(err)
	}
	msg := in.Message()
	in.Zero()
	f.gen.AddMACs(msg)
	return msg
}

// sessions runs one full handshake per identity against a second responder
// with the hub's config (untimed set-up; its replay state is its own), so
// that tickets can be issued for each identity.
func (f *stFixture) sessions(b *testing.B) {
	prep := handshake.NewResponder(f.host.Config())
	for i := range identities {
		in, err := handshake.NewInitiation(f.inits[i], f.hub, uint32(i+1))
		if err != nil {
			b.Fatal(err)
		}
		msg := in.Message()
		f.gen.AddMACs(msg)
		resp, sg, err := prep.ConsumeInitiation(msg, uint32(i+1))
		if err != nil {
			b.Fatal(err)
		}
		sc, err := in.ConsumeResponse(resp)
		if err != nil {
			b.Fatal(err)
		}
		f.sc[i], f.sg[i] = sc, sg
	}
}

// resumption builds message 5 for identity id with a fresh ticket, as the
// initiator would after the hub's new-ticket message.
func (f *stFixture) resumption(b *testing.B, id int) []byte {
	tm, err := f.ring.Issue(f.sg[id], f.host.PublicKey(), f.inits[id].PrivateKey.PublicKey(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ticket, _, err := handshake.ParseTicketMessage(tm)
	if err != nil {
		b.Fatal(err)
	}
	secret := f.sc[id].ResumptionSecret
	r, err := handshake.NewResumption(f.inits[id], f.hub, ticket, &secret, uint32(id+1))
	if err != nil {
		b.Fatal(err)
	}
	msg := r.Message()
	r.Zero()
	f.gen.AddMACs(msg)
	return msg
}

func benchStunnelFull(b *testing.B, withTickets bool) {
	f := newSTFixture(b, withTickets)
	run(b, &f.turns, func(id int) []byte { return f.initiation(b, id) }, f.fullAnswer)
}

func benchStunnelResumed(b *testing.B) {
	f := newSTFixture(b, true)
	f.sessions(b)
	run(b, &f.turns, func(id int) []byte { return f.resumption(b, id) }, f.resumedAnswer)
}

// run is the loop every benchmark shares: prepare a batch untimed, answer
// it timed.
func run(b *testing.B, tr *turns, prepare func(id int) []byte, answer func([]byte) error) {
	ct := cputimer.New(b)
	ids := make([]int, 0, batch)
	msgs := make([][]byte, 0, batch)
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		ids, msgs = ids[:0], msgs[:0]
		for range n {
			id := tr.take()
			ids = append(ids, id)
			msgs = append(msgs, prepare(id))
		}
		ct.Start()
		for _, m := range msgs {
			if err := answer(m); err != nil {
				ct.Stop()
				b.Fatal(err)
			}
		}
		ct.Stop()
		tr.answered(ids)
		done += n
	}
	ct.Report("handshakes")
}

// BenchmarkResponder: handshakes per second per core, responder side.
// Run with -cpu 1 (GOMAXPROCS=1).
func BenchmarkResponder(b *testing.B) {
	b.Run("stunnel-full", func(b *testing.B) { benchStunnelFull(b, true) })
	b.Run("stunnel-full-noticket", func(b *testing.B) { benchStunnelFull(b, false) })
	b.Run("stunnel-resumed", benchStunnelResumed)
	b.Run("wireguard-go-full", benchWireguardGoFull)
}
