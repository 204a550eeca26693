package rekey

import (
	"fmt"
	"testing"
	"time"
)

// The tests in this file play two tunnel ends with real ChaCha20-Poly1305
// keys, driving Keypairs, Timers and Queue the way the tunnel package does;
// the handshake itself is simulated by pair.

type packet struct {
	index   uint32 // receiver index
	counter uint64
	ct      []byte
}

type side struct {
	t       *testing.T
	name    string
	pub     [32]byte
	kps     Keypairs
	timers  *Timers
	queue   *Queue
	byIndex map[uint32]*Keypair
	dropped int       // queue evictions
	got     []string  // payloads received, in order
	out     []packet  // sealed by flush, for the test to deliver
	sent    time.Time // when our pending initiation went out (zero: long ago)
}

func newSide(t *testing.T, name string, p Policy, pubByte byte) *side {
	return &side{t: t, name: name, pub: [32]byte{pubByte}, timers: NewTimers(p, half),
		queue: NewQueue(4), byIndex: map[uint32]*Keypair{}}
}

func (s *side) forget(dropped []*Keypair) {
	for _, k := range dropped {
		delete(s.byIndex, k.LocalIndex)
	}
}

func (s *side) install(k *Keypair, now time.Time) {
	s.byIndex[k.LocalIndex] = k
	s.forget(s.kps.InstallInitiated(k, s.sent))
	if k.Initiator && !k.IsZeroed() { // zeroed: yielded to the peer's crossing session
		s.timers.HandshakeCompleted(now)
		s.flush(now)
	}
}

// seal sends payload under the current key, or queues it and wants keys.
func (s *side) seal(payload string, now time.Time) (packet, bool) {
	k := s.kps.Current(now)
	if k == nil {
		if _, dropped := s.queue.Push([]byte(payload)); dropped {
			s.dropped++
		}
		s.timers.WantHandshake(now)
		return packet{}, false
	}
	if k.NeedsRekeyOnSend(now) {
		s.timers.WantHandshake(now)
	}
	n, ok := k.NextNonce(now)
	if !ok {
		s.t.Fatalf("%s: Current returned a key whose NextNonce refuses", s.name)
	}
	s.timers.AuthenticatedSent(now)
	return packet{k.RemoteIndex, n, k.Send.Seal(nil, nonce(n), []byte(payload), nil)}, true
}

func (s *side) flush(now time.Time) {
	s.queue.Drain(func(b []byte) {
		if p, ok := s.seal(string(b), now); ok {
			s.out = append(s.out, p)
		}
	})
}

// open authenticates, then checks the counter, then tells the slots.
func (s *side) open(p packet, now time.Time) error {
	k := s.byIndex[p.index]
	if k == nil {
		return fmt.Errorf("%s: unknown index %d", s.name, p.index)
	}
	pt, err := k.Recv.Open(nil, nonce(p.counter), p.ct, nil)
	if err != nil {
		return fmt.Errorf("%s: authentication failed", s.name)
	}
	if k.CheckCounter(p.counter, now) != Fresh {
		return fmt.Errorf("%s: counter %d refused (replay or expired key)", s.name, p.counter)
	}
	s.timers.AuthenticatedReceived(now)
	promoted, dropped := s.kps.Received(k)
	s.forget(dropped)
	if promoted {
		s.timers.HandshakeCompleted(now)
		s.flush(now)
	}
	s.got = append(s.got, string(pt))
	return nil
}

func (s *side) current(now time.Time) *Keypair { return s.kps.Current(now) }

var nextIndex uint32

// handshake runs a simulated handshake: the responder installs at once (as
// next), the initiator when the response arrives.
func handshake(t *testing.T, p Policy, init, resp *side, now time.Time) (ik, rk *Keypair) {
	nextIndex += 2
	ik, rk = pair(t, p, now, nextIndex, nextIndex+1)
	resp.install(rk, now)
	init.install(ik, now)
	return ik, rk
}

func mustOpen(t *testing.T, s *side, p packet, now time.Time) {
	t.Helper()
	if err := s.open(p, now); err != nil {
		t.Fatal(err)
	}
}

func mustSeal(t *testing.T, s *side, payload string, now time.Time) packet {
	t.Helper()
	p, ok := s.seal(payload, now)
	if !ok {
		t.Fatalf("%s: no key to send %q at %v", s.name, payload, now.Sub(t0))
	}
	return p
}

func TestTwoSidesAcrossRekey(t *testing.T) {
	p := DefaultPolicy()
	a, b := newSide(t, "A", p, 1), newSide(t, "B", p, 2)

	k1, _ := handshake(t, p, a, b, t0)
	if b.current(t0) != nil {
		t.Fatal("responder may send before the initiator confirmed the key")
	}
	if _, ok := b.seal("b-early", t0); ok {
		t.Fatal("responder sealed under an unconfirmed key")
	}
	mustOpen(t, b, mustSeal(t, a, "a1", t0), t0) // confirms k1 at B, which flushes b-early
	if b.current(t0) == nil || b.current(t0).SessionID != k1.SessionID {
		t.Fatal("responder did not promote the key on the first packet under it")
	}
	for _, pk := range b.out {
		mustOpen(t, a, pk, t0)
	}
	if fmt.Sprint(a.got) != "[b-early]" {
		t.Fatalf("initiator received %v, want the responder's queued [b-early]", a.got)
	}

	// Rekey on time: only the initiator wants it, at exactly rekey_after.
	before, when := at(p.RekeyAfterTime-time.Millisecond), at(p.RekeyAfterTime)
	mustSeal(t, a, "a-before", before)
	mustSeal(t, b, "b-before", before)
	if a.timers.Handshaking() || b.timers.Handshaking() {
		t.Fatal("a handshake was wanted before rekey_after")
	}
	inflightA := mustSeal(t, a, "a-old", when) // still under k1
	if !a.timers.Handshaking() || a.timers.Due(when)&ActSendInitiation == 0 {
		t.Fatal("initiator does not start a handshake at rekey_after")
	}
	if b.timers.Handshaking() {
		t.Fatal("responder wants a handshake on time")
	}

	// Handshake 2: A initiates again. B keeps sending under k1 until confirmed.
	k2, _ := handshake(t, p, a, b, when)
	inflightB := mustSeal(t, b, "b-old", when)
	if b.current(when).SessionID != k1.SessionID {
		t.Fatal("responder switched to the new key before the initiator confirmed it")
	}
	if a.current(when).SessionID != k2.SessionID {
		t.Fatal("initiator did not switch to the new key at once")
	}
	mustOpen(t, a, inflightB, when) // under A's previous key
	mustOpen(t, b, inflightA, when) // sealed under k1 before the switch
	mustOpen(t, b, mustSeal(t, a, "a-new", when), when)
	if b.current(when).SessionID != k2.SessionID {
		t.Fatal("responder did not promote the new key")
	}
	if err := a.open(inflightB, when); err == nil {
		t.Fatal("a replayed packet under the previous key opened twice")
	}
	forged := inflightA
	forged.counter = 1 << 40 // must not move the replay window: authentication fails first
	if err := b.open(forged, when); err == nil {
		t.Fatal("a forged packet opened")
	}
	mustOpen(t, b, mustSeal(t, a, "a-after-forgery", when), when)

	// Past reject_after of k1 (and short of k2's), k1 neither seals nor opens.
	late := at(p.RejectAfterTime)
	stale := packet{k1.RemoteIndex, 1000, k1.Send.Seal(nil, nonce(1000), []byte("stale"), nil)}
	if err := b.open(stale, late); err == nil {
		t.Fatal("a packet under a key past reject_after was accepted")
	}
	if _, ok := k1.NextNonce(late); ok {
		t.Fatal("a key past reject_after sealed")
	}
	mustOpen(t, b, mustSeal(t, a, "a-k2", late), late)
	mustOpen(t, a, mustSeal(t, b, "b-k2", late), late)

	// Nobody rekeys: past k2's reject_after nothing seals, packets queue.
	dead := when.Add(p.RejectAfterTime)
	if _, ok := a.seal("a-dead", dead); ok {
		t.Fatal("a packet was sealed after reject_after")
	}
	if _, ok := b.seal("b-dead", dead); ok {
		t.Fatal("a packet was sealed after reject_after")
	}
	if a.queue.Len() != 1 || b.queue.Len() != 1 {
		t.Fatal("packets without a key were not queued")
	}
}

// Both sides initiate at once and each answers the other's initiation (no
// initiation is left unanswered). Whatever order each side sees the other's
// initiation and its own response in, with data flowing both ways
// throughout: no packet is lost, both sides end up sending under one
// session, initiated by one side, and so only that side rekeys on time.
// Before the tie-break, each side went on sending under the session it
// initiated: both rekeyed at the same instant, crossed again at every
// rekey, and each time dropped the key the other was still sending under.
func TestCrossingInitiationsConvergeWithoutLoss(t *testing.T) {
	orders := map[string]crossingOrder{
		// Both see the other's initiation before their own response.
		"both-answer-first": func(a, b *side, ka, kaResp, kb, kbResp *Keypair, now time.Time, arrive func()) {
			b.install(kaResp, now)
			a.install(kbResp, now)
			a.install(ka, now)
			b.install(kb, now)
			arrive()
		},
		// A has its response before B's initiation; B the other way round.
		"a-response-first": func(a, b *side, ka, kaResp, kb, kbResp *Keypair, now time.Time, arrive func()) {
			b.install(kaResp, now)
			a.install(ka, now)
			a.install(kbResp, now)
			b.install(kb, now)
			arrive()
		},
		"b-response-first": func(a, b *side, ka, kaResp, kb, kbResp *Keypair, now time.Time, arrive func()) {
			a.install(kbResp, now)
			b.install(kb, now)
			b.install(kaResp, now)
			a.install(ka, now)
			arrive()
		},
		// A answered B's initiation before it sent its own: no crossing
		// for A, and B had its response before A's initiation.
		"a-answered-before-initiating": func(a, b *side, ka, kaResp, kb, kbResp *Keypair, now time.Time, arrive func()) {
			kbResp.Created = now.Add(-time.Microsecond)
			a.install(kbResp, now)
			a.sent = now
			b.install(kb, now)
			b.install(kaResp, now)
			arrive() // B sealed its last packet under the old session before it sent A's response
			a.install(ka, now)
		},
	}
	for name, order := range orders {
		for _, prior := range []bool{false, true} {
			for _, aWins := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/prior=%v/aWins=%v", name, prior, aWins), func(t *testing.T) {
					crossing(t, order, prior, aWins)
				})
			}
		}
	}
}

// crossingOrder installs the two crossing handshakes in one order (a's
// handshake is ka at a and kaResp at b; b's is kb at b and kbResp at a),
// and calls arrive where the packets sealed under the old session before
// the installs arrive at the latest.
type crossingOrder func(a, b *side, ka, kaResp, kb, kbResp *Keypair, now time.Time, arrive func())

// crossing runs one case of TestCrossingInitiationsConvergeWithoutLoss.
func crossing(t *testing.T, order crossingOrder, prior, aWins bool) {
	p := DefaultPolicy()
	a, b := newSide(t, "A", p, 1), newSide(t, "B", p, 2)
	now := t0
	if prior {
		handshake(t, p, a, b, now)
		mustOpen(t, b, mustSeal(t, a, "hello", now), now)
		now = now.Add(p.RejectAfterTime / 2)
	}
	for _, s := range []*side{a, b} {
		s.timers.WantHandshake(now)
		if s.timers.Due(now)&ActSendInitiation == 0 {
			t.Fatalf("%s: no initiation", s.name)
		}
		s.timers.HandshakeInitiated(now)
	}
	now = now.Add(time.Millisecond)
	nextIndex += 4
	ka, kaResp := pair(t, p, now, nextIndex, nextIndex+1)   // a's handshake
	kb, kbResp := pair(t, p, now, nextIndex+2, nextIndex+3) // b's handshake
	low, high := [32]byte{1}, [32]byte{2}
	if !aWins {
		low, high = high, low
	}
	ka.SessionID, kaResp.SessionID, kb.SessionID, kbResp.SessionID = low, low, high, high

	// Packets sealed before the installs, still in flight after them.
	var inflight []packet
	for _, s := range []*side{a, b} {
		if pk, ok := s.seal(s.name+"-old", now); ok {
			inflight = append(inflight, pk)
		}
	}
	deliver := func(from, to *side, pk packet) {
		t.Helper()
		if err := to.open(pk, now); err != nil {
			t.Fatalf("%s -> %s lost: %v", from.name, to.name, err)
		}
	}
	order(a, b, ka, kaResp, kb, kbResp, now, func() {
		if prior {
			deliver(a, b, inflight[0])
			deliver(b, a, inflight[1])
		}
	})
	// Data both ways at once: each round both seal, then both open.
	for round := range 4 {
		var toB, toA []packet
		toB, a.out = append(toB, a.out...), nil
		toA, b.out = append(toA, b.out...), nil
		if pk, ok := a.seal(fmt.Sprint("a", round), now); ok {
			toB = append(toB, pk)
		}
		if pk, ok := b.seal(fmt.Sprint("b", round), now); ok {
			toA = append(toA, pk)
		}
		for _, pk := range toB {
			deliver(a, b, pk)
		}
		for _, pk := range toA {
			deliver(b, a, pk)
		}
	}
	if a.dropped+b.dropped != 0 || a.queue.Len()+b.queue.Len() != 0 {
		t.Fatalf("packets still queued or dropped: A %d/%d, B %d/%d", a.queue.Len(), a.dropped, b.queue.Len(), b.dropped)
	}
	ca, cb := a.current(now), b.current(now)
	if ca == nil || cb == nil || ca.SessionID != cb.SessionID {
		t.Fatal("the two sides do not send under one session")
	}
	if ca.Initiator == cb.Initiator {
		t.Fatalf("initiator flags A=%v B=%v: want exactly one side to own the session", ca.Initiator, cb.Initiator)
	}
	if a.sent.IsZero() { // a crossing on both sides: the lower session ID won
		winner := kb
		if aWins {
			winner = ka
		}
		if ca != winner && cb != winner {
			t.Fatal("the session with the higher ID won")
		}
	}
	for _, s := range []*side{a, b} {
		if s.timers.Handshaking() {
			t.Fatalf("%s: still handshaking", s.name)
		}
	}
	// At rekey_after, one side rekeys: no crossing again.
	later := now.Add(p.RekeyAfterTime)
	mustSeal(t, a, "a-late", later)
	mustSeal(t, b, "b-late", later)
	if a.timers.Handshaking() == b.timers.Handshaking() {
		t.Fatalf("at rekey_after A handshaking=%v B handshaking=%v: want exactly one", a.timers.Handshaking(), b.timers.Handshaking())
	}
}

func TestCounterExhaustionForcesRekeyThenHardStop(t *testing.T) {
	p := DefaultPolicy()
	p.RekeyAfterMessages, p.RejectAfterMessages = 4, 8
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	a, b := newSide(t, "A", p, 1), newSide(t, "B", p, 2)
	handshake(t, p, a, b, t0)
	mustOpen(t, b, mustSeal(t, a, "a0", t0), t0)
	// The responder reaches the count too: either side rekeys on messages.
	for i := range 8 {
		if got := b.timers.Handshaking(); got != (i > 4) {
			t.Fatalf("after %d sends responder Handshaking = %v", i, got)
		}
		mustOpen(t, a, mustSeal(t, b, fmt.Sprint("b", i), t0), t0)
	}
	if _, ok := b.seal("b8", t0); ok {
		t.Fatal("sealed past RejectAfterMessages")
	}
	if b.queue.Len() != 1 {
		t.Fatal("the refused packet was not queued")
	}
	// B initiates; the new key confirms and the queue drains in order.
	now := at(time.Second)
	if b.timers.Due(now)&ActSendInitiation == 0 {
		t.Fatal("no initiation after counter exhaustion")
	}
	b.timers.HandshakeInitiated(now)
	handshake(t, p, b, a, now)
	if len(b.out) != 1 {
		t.Fatalf("%d queued packets sent after the handshake, want 1", len(b.out))
	}
	mustOpen(t, a, b.out[0], now)
	if got := a.got[len(a.got)-1]; got != "b8" {
		t.Fatalf("last received %q, want the queued b8", got)
	}
}

func TestPendingQueueBoundedAndOrderedAcrossHandshake(t *testing.T) {
	p := DefaultPolicy()
	a, b := newSide(t, "A", p, 1), newSide(t, "B", p, 2)
	for i := range 7 {
		if _, ok := a.seal(fmt.Sprint("p", i), t0); ok {
			t.Fatal("sealed without a key")
		}
	}
	if a.queue.Len() != 4 || a.dropped != 3 {
		t.Fatalf("queue holds %d with %d dropped, want 4 and 3", a.queue.Len(), a.dropped)
	}
	a.timers.Due(t0)
	a.timers.HandshakeInitiated(t0)
	handshake(t, p, a, b, t0)
	for _, pk := range a.out {
		mustOpen(t, b, pk, t0)
	}
	if got := fmt.Sprint(b.got); got != "[p3 p4 p5 p6]" {
		t.Fatalf("received %s, want the newest four in order [p3 p4 p5 p6]", got)
	}
	if a.queue.Len() != 0 {
		t.Fatal("queue not empty after the flush")
	}
}
