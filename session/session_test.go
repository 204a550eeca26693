package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

type lookup map[string]handshake.PeerInfo

func (l lookup) LookupPeer(id []byte) (handshake.PeerInfo, error) {
	if p, ok := l[string(id)]; ok {
		return p, nil
	}
	return handshake.PeerInfo{}, handshake.ErrUnknownPeer
}

// side is one host with one peer, on a fake clock.
type side struct {
	host  *Host
	peer  *Peer
	reg   *MapRegistry
	peers lookup
}

func newSides(t testing.TB, now *time.Time) (a, b *side) {
	t.Helper()
	ka, _ := handshake.GeneratePrivateKey(nil)
	kb, _ := handshake.GeneratePrivateKey(nil)
	clock := func() time.Time { return *now }
	mk := func(id string, k handshake.PrivateKey) *side {
		s := &side{reg: NewMapRegistry(), peers: lookup{}}
		cfg := &handshake.Config{PeerID: []byte(id), PrivateKey: k, Peers: s.peers, Now: clock}
		s.host = NewHost(cfg, rekey.DefaultPolicy())
		s.host.SetJitter(func() float64 { return 0 })
		return s
	}
	a, b = mk("a", ka), mk("b", kb)
	a.peers["b"] = handshake.PeerInfo{PublicKey: kb.PublicKey()}
	b.peers["a"] = handshake.PeerInfo{PublicKey: ka.PublicKey()}
	a.peer = a.host.NewPeer(PeerConfig{ID: "b", PublicKey: kb.PublicKey()}, a.reg)
	b.peer = b.host.NewPeer(PeerConfig{ID: "a", PublicKey: ka.PublicKey()}, b.reg)
	return a, b
}

// answer runs the responder's side of msg1 and returns message 2.
func (s *side) answer(t *testing.T, msg []byte, now time.Time) []byte {
	t.Helper()
	idx := s.reg.Reserve()
	resp, sess, err := s.host.ConsumeInitiation(msg, idx)
	if err != nil {
		t.Fatalf("ConsumeInitiation: %v", err)
	}
	if err := s.peer.Accept(sess, idx, now); err != nil {
		t.Fatal(err)
	}
	return resp
}

func (s *side) complete(t *testing.T, resp []byte, now time.Time) *rekey.Keypair {
	t.Helper()
	idx, _ := handshake.PeekResponseReceiver(resp)
	c, err := s.peer.ConsumeResponse(idx, resp, "198.18.0.2:51820", now)
	if err != nil {
		t.Fatalf("ConsumeResponse: %v", err)
	}
	return c.Keypair
}

func TestHandshakeBothRolesAndConfirmation(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	if a.peer.WantHandshake(now)&rekey.ActSendInitiation == 0 {
		t.Fatal("wanting keys did not ask for an initiation")
	}
	msg, attempt, err := a.peer.Initiate(now, "198.18.0.2:51820")
	if err != nil || attempt != 0 {
		t.Fatalf("Initiate: attempt %d, %v", attempt, err)
	}
	resp := b.answer(t, msg, now)
	if b.peer.Current(now) != nil {
		t.Fatal("the responder sends before the initiator confirmed the key")
	}
	kp := a.complete(t, resp, now)
	if a.peer.Current(now) != kp || a.peer.Status(now).Handshakes != 1 {
		t.Fatal("the initiator does not send under the new key")
	}
	_, _, next := b.peer.Slots()
	promoted, _ := b.peer.Received(next, false, now) // a's confirming keepalive
	if !promoted || b.peer.Current(now) != next || b.peer.Status(now).Handshakes != 1 {
		t.Fatal("the responder did not promote the confirmed key")
	}
	if kp.SessionID != next.SessionID {
		t.Fatal("the two sides' sessions differ")
	}
	if a.peer.Handshaking() || b.peer.Handshaking() {
		t.Fatal("still handshaking after completion")
	}
}

func TestForgedResponseChangesNothing(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "198.18.0.2:51820")
	resp := b.answer(t, msg, now)
	forged := append([]byte(nil), resp...)
	forged[len(forged)-40] ^= 1 // inside the encrypted part
	idx, _ := handshake.PeekResponseReceiver(forged)
	if _, err := a.peer.ConsumeResponse(idx, forged, "198.18.0.66:1", now); err == nil {
		t.Fatal("a forged response was accepted")
	}
	if pr := a.peer.Status(now).Problem; pr.Reason != ReasonNone {
		t.Fatalf("a forged response wrote the problem: %q", pr)
	}
	if !a.peer.Initiating() {
		t.Fatal("a forged response aborted our handshake")
	}
	a.complete(t, resp, now) // the real one still completes
}

func TestResponseForAnotherIndexIsNotPending(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	first, _, _ := a.peer.Initiate(now, "x")
	resp := b.answer(t, first, now)
	now = now.Add(6 * time.Second)
	if _, _, err := a.peer.Initiate(now, "x"); err != nil { // supersedes the first
		t.Fatal(err)
	}
	idx, _ := handshake.PeekResponseReceiver(resp)
	if _, err := a.peer.ConsumeResponse(idx, resp, "x", now); !errors.Is(err, ErrNotPending) {
		t.Fatalf("a response to an abandoned initiation: %v, want ErrNotPending", err)
	}
}

func TestCrossingInitiationsAreBothAnswered(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msgA, _, _ := a.peer.Initiate(now, "b")
	msgB, _, _ := b.peer.Initiate(now, "a")
	// a's initiation is lost; b's arrives at a, which answers although its
	// own initiation is pending.
	_ = msgA
	resp := a.answer(t, msgB, now)
	if !a.peer.Initiating() {
		t.Fatal("answering the peer abandoned our own initiation")
	}
	kb := b.complete(t, resp, now)
	promoted, _ := a.peer.Received(nextOf(a.peer), true, now)
	if !promoted || a.peer.Current(now).SessionID != kb.SessionID {
		t.Fatal("a did not take the session b confirmed")
	}
}

func nextOf(p *Peer) *rekey.Keypair { _, _, n := p.Slots(); return n }

func TestRetriesThenGiveUpSayWhy(t *testing.T) {
	now := t0
	a, _ := newSides(t, &now)
	a.peer.WantHandshake(now)
	if _, _, err := a.peer.Initiate(now, "198.18.0.2:51820"); err != nil {
		t.Fatal(err)
	}
	var gaveUp bool
	for i := 0; i < 40 && !gaveUp; i++ {
		now = now.Add(5 * time.Second)
		act := a.peer.Due(now)
		if act&rekey.ActSendInitiation != 0 {
			if _, attempt, _ := a.peer.Initiate(now, "198.18.0.2:51820"); attempt == 0 {
				t.Fatal("a retry was counted as a first attempt")
			}
			if pr := a.peer.Status(now).Problem; pr.Reason != ReasonNoAnswer || !strings.Contains(pr.String(), "no answer from 198.18.0.2:51820") {
				t.Fatalf("problem while retrying: %q", pr)
			}
		}
		gaveUp = act&rekey.ActGiveUp != 0
	}
	if !gaveUp {
		t.Fatal("never gave up")
	}
	pr := a.peer.Status(now).Problem
	if pr.Reason != ReasonGaveUp || !strings.HasPrefix(pr.String(), "handshake did not complete: no answer from 198.18.0.2:51820") {
		t.Fatalf("give-up problem: %q", pr)
	}
	if a.peer.Initiating() || a.reg.Len() != 0 {
		t.Fatal("giving up left the initiation or its index behind")
	}
}

func TestClearZeroesKeysAndReleasesIndices(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	kp := a.complete(t, b.answer(t, msg, now), now)
	if _, _, err := a.peer.Initiate(now.Add(time.Minute), "x"); err != nil { // one more pending
		t.Fatal(err)
	}
	a.peer.Clear()
	if !kp.IsZeroed() || a.peer.Current(now) != nil || a.peer.Initiating() || a.reg.Len() != 0 {
		t.Fatal("Clear left keys, an initiation or indices behind")
	}
}

// A resumption secret is zeroed once it cannot serve any more: the one
// waiting for a ticket when its session's key expires (the ticket would
// arrive under that key), the held ticket's when the ticket expires. Before,
// both stayed until the keypair left its slot at 3 x reject_after, or the
// next handshake.
func TestDueZeroesResumptionSecretsThatCannotServe(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	policy := rekey.DefaultPolicy()
	msg, _, _ := a.peer.Initiate(now, "x")
	a.complete(t, b.answer(t, msg, now), now)
	if a.peer.secretFor == nil || a.peer.secret == ([32]byte{}) {
		t.Fatal("no resumption secret kept for the session's ticket")
	}
	a.peer.Due(now.Add(policy.RejectAfterTime))
	if a.peer.secretFor != nil || a.peer.secret != ([32]byte{}) {
		t.Fatal("the resumption secret outlived its session's key")
	}

	now = now.Add(time.Hour)
	msg, _, _ = a.peer.Initiate(now, "x")
	kp := a.complete(t, b.answer(t, msg, now), now)
	tm, err := handshake.MarshalTicketMessage([]byte("ticket"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peer.ReceiveControl(tm, kp, now); err != nil {
		t.Fatal(err)
	}
	held := a.peer.held
	if held == nil || held.secret == ([32]byte{}) {
		t.Fatal("the ticket was not kept with its secret")
	}
	a.peer.Due(now.Add(time.Minute - time.Second))
	if a.peer.held != held {
		t.Fatal("a ticket still valid was dropped")
	}
	a.peer.Due(now.Add(time.Minute))
	if a.peer.held != nil || held.secret != ([32]byte{}) {
		t.Fatal("the expired ticket's resumption secret was not zeroed")
	}
}

// ZeroPrivateKey (the tunnel closed) must reach every copy of the static
// key the Host holds, the responder's own included: a Host whose key is
// gone answers no initiation. Before the fix the responder's copy survived
// and the handshake below succeeded.
func TestZeroPrivateKeyLeavesNoWorkingCopy(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	a.complete(t, b.answer(t, msg, now), now) // b's responder has used its copy
	b.host.ZeroPrivateKey()
	if !b.host.Config().PrivateKey.IsZero() {
		t.Fatal("the configuration's private key survived ZeroPrivateKey")
	}
	now = now.Add(time.Minute) // past the per-peer initiation rate limit
	msg, _, err := a.peer.Initiate(now, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.host.ConsumeInitiation(msg, b.reg.Reserve()); !errors.Is(err, handshake.ErrStaticKey) {
		t.Fatalf("initiation answered after ZeroPrivateKey: %v, want ErrStaticKey", err)
	}
}

// A clean stop's snapshot brings the session back in a new process: the
// peer sees no handshake, counters continue, nothing accepted before is
// accepted again, the held ticket comes along; a stale snapshot restores
// nothing.
func TestSnapshotRestoreContinuesWithoutReuse(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	kpA := a.complete(t, b.answer(t, msg, now), now)
	kpB := nextOf(b.peer)
	b.peer.Received(kpB, false, now)
	for range 5 {
		n, _ := kpA.NextNonce(now)
		if kpB.CheckCounter(n, now) != rekey.Fresh {
			t.Fatal("fresh counter refused")
		}
	}
	sentByB, _ := kpB.NextNonce(now)

	saved := b.peer.Snapshot(nil, "198.18.0.1:51820", true)
	if _, ok := kpB.NextNonce(now); ok || kpB.CheckCounter(5, now) == rekey.Fresh {
		t.Fatal("a retired keypair still seals or opens")
	}

	// The "restarted" b: same identity, new host, registry and peer.
	restart := func(at time.Time) (*Peer, Restored, string) {
		t.Helper()
		reg := NewMapRegistry()
		h := NewHost(b.host.cfg, rekey.DefaultPolicy())
		p := h.NewPeer(b.peer.cfg, reg)
		ep, r, err := p.Restore(saved, at)
		if err != nil {
			t.Fatal(err)
		}
		return p, r, ep
	}
	p2, r, ep := restart(now.Add(time.Second))
	if r.Sessions != 1 || ep != "198.18.0.1:51820" || !p2.Status(now).Restored {
		t.Fatalf("restored %+v, endpoint %q", r, ep)
	}
	kp2 := p2.Current(now.Add(time.Second))
	if kp2 == nil || kp2.SessionID != kpA.SessionID {
		t.Fatal("the restored session is not current")
	}
	for c := range uint64(5) {
		if kp2.CheckCounter(c, now) == rekey.Fresh {
			t.Fatalf("counter %d accepted again after the restore", c)
		}
	}
	n, _ := kpA.NextNonce(now)
	if kp2.CheckCounter(n, now) != rekey.Fresh {
		t.Fatal("the peer's next counter is refused after the restore")
	}
	if next, _ := kp2.NextNonce(now); next <= sentByB {
		t.Fatalf("send counter went back: %d after %d", next, sentByB)
	}
	if p2.Handshaking() {
		t.Fatal("a restored session wants a handshake")
	}
	_, r, _ = restart(now.Add(rekey.DefaultPolicy().RejectAfterTime))
	if r.Sessions != 0 || len(r.Dropped) != 1 || r.Dropped[0] != "expired" {
		t.Fatalf("stale snapshot: %+v", r)
	}
	other, _ := newSides(t, &now)
	if _, _, err := other.peer.Restore(saved, now); err == nil {
		t.Fatal("a snapshot restored into another peer identity")
	}
	for i := range saved {
		bad := append([]byte(nil), saved...)
		bad = bad[:i] // every truncation is refused, none panics
		reg := NewMapRegistry()
		p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(b.peer.cfg, reg)
		if _, _, err := p.Restore(bad, now); err == nil {
			t.Fatalf("truncated at %d: accepted", i)
		}
		if reg.Len() != 0 {
			t.Fatalf("truncated at %d: indices left behind", i)
		}
	}
}

// One Peer takes one saved state. A second Restore of the same bytes, once
// the first restore's keypairs were cleared and their indices freed, would
// import the same keys at the same send counter: every nonce sent since the
// first restore would be sealed again.
func TestRestoreTwiceIntoOnePeerRefused(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	a.complete(t, b.answer(t, msg, now), now)
	kpB := nextOf(b.peer)
	b.peer.Received(kpB, false, now)
	saved := b.peer.Snapshot(nil, "198.18.0.1:51820", true)

	reg := NewMapRegistry()
	p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(b.peer.cfg, reg)
	if _, r, err := p.Restore(saved, now); err != nil || r.Sessions != 1 {
		t.Fatalf("first restore: %+v, %v", r, err)
	}
	first, _ := p.Current(now).NextNonce(now)
	if _, _, err := p.Restore(saved, now); !errors.Is(err, ErrRestoreTwice) {
		t.Fatalf("second restore over live sessions: %v, want ErrRestoreTwice", err)
	}
	if p.Current(now) == nil {
		t.Fatal("the refused restore took the live session away")
	}
	p.Clear() // a disconnect: keys zeroed, indices freed
	if _, r, err := p.Restore(saved, now); !errors.Is(err, ErrRestoreTwice) || r.Sessions != 0 {
		t.Fatalf("restore after Clear: %+v, %v, want ErrRestoreTwice", r, err)
	}
	if kp := p.Current(now); kp != nil {
		if n, ok := kp.NextNonce(now); ok && n <= first {
			t.Fatalf("counter %d sealed again under the restored key", n)
		}
	}
	if reg.Len() != 0 {
		t.Fatalf("%d indices registered after the refused restore", reg.Len())
	}
}

// FuzzRestore feeds arbitrary bytes to Restore: nothing panics, and a
// failed restore leaves no index registered.
func FuzzRestore(f *testing.F) {
	now := t0
	a, b := newSides(f, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	idx := b.reg.Reserve()
	_, sess, _ := b.host.ConsumeInitiation(msg, idx)
	_ = b.peer.Accept(sess, idx, now)
	f.Add(b.peer.Snapshot(nil, "198.18.0.1:51820", true))
	f.Add(b.peer.Snapshot(nil, "", false))
	f.Fuzz(func(t *testing.T, data []byte) {
		reg := NewMapRegistry()
		p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(b.peer.cfg, reg)
		if _, _, err := p.Restore(data, now); err != nil && reg.Len() != 0 {
			t.Fatal("a failed restore left indices registered")
		}
	})
}

// A peer whose pre-shared key changed across the restart gets nothing back
// (a reload restarts such a peer's session too); the same key restores, and
// a version 1 state (written before the key's hash was saved) still
// restores, so an upgrade keeps its sessions.
func TestRestoreRefusesChangedPresharedKey(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	a.complete(t, b.answer(t, msg, now), now)
	b.peer.cfg.PresharedKey = handshake.PresharedKey{1: 9} // as configured when b stopped
	saved := b.peer.Snapshot(nil, "198.18.0.1:51820", true)

	restore := func(state []byte, psk handshake.PresharedKey) (Restored, error) {
		t.Helper()
		reg := NewMapRegistry()
		cfg := b.peer.cfg
		cfg.PresharedKey = psk
		p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(cfg, reg)
		_, r, err := p.Restore(state, now.Add(time.Second))
		if err != nil && reg.Len() != 0 {
			t.Fatal("a refused restore left indices registered")
		}
		return r, err
	}
	if r, err := restore(saved, handshake.PresharedKey{1: 9}); err != nil || r.Sessions != 1 {
		t.Fatalf("same pre-shared key: %+v, %v; want the session back", r, err)
	}
	for _, psk := range []handshake.PresharedKey{{1: 8}, {}} {
		if r, err := restore(saved, psk); !errors.Is(err, ErrOtherPSK) || !errors.Is(err, ErrOtherIdentity) || r.Sessions != 0 {
			t.Fatalf("pre-shared key changed: %+v, %v; want ErrOtherPSK and nothing restored", r, err)
		}
	}
	// Version 1: the same encoding without the 32-byte hash after the public key.
	at := 1 + 2 + len(b.peer.cfg.ID) + 32
	v1 := append(append([]byte{peerStateVersionV1}, saved[1:at]...), saved[at+32:]...)
	if id, ok := SnapshotPeerID(v1); !ok || id != b.peer.cfg.ID {
		t.Fatalf("SnapshotPeerID of a version 1 state = %q, %v", id, ok)
	}
	if r, err := restore(v1, handshake.PresharedKey{1: 8}); err != nil || r.Sessions != 1 {
		t.Fatalf("version 1 state: %+v, %v; want the session back", r, err)
	}
}

// A late packet under an old keypair we initiated starts no handshake while
// the current keypair is fresh: the current one decides, as in
// wireguard-go's keepKeyFreshReceiving. Received used to ask the packet's
// keypair, so a straggler under the previous key asked for a rekey that
// the current key did not need.
func TestRekeyOnReceiveAsksTheCurrentKeypair(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	policy := rekey.DefaultPolicy()
	recvRekeyAge := policy.RejectAfterTime - policy.KeepaliveTimeout - policy.RekeyTimeout
	msg, _, _ := a.peer.Initiate(now, "x")
	old := a.complete(t, b.answer(t, msg, now), now)
	now = now.Add(recvRekeyAge)
	msg, _, _ = a.peer.Initiate(now, "x")
	fresh := a.complete(t, b.answer(t, msg, now), now)
	if prev, cur, _ := a.peer.Slots(); prev != old || cur != fresh {
		t.Fatal("the old keypair is not previous and the new one current")
	}
	if _, rekeyNow := a.peer.Received(old, true, now); rekeyNow {
		t.Fatal("a packet under the old previous keypair asked for a rekey while the current one is fresh")
	}
	if _, rekeyNow := a.peer.Received(fresh, true, now); rekeyNow {
		t.Fatal("a packet under the fresh current keypair asked for a rekey")
	}
	now = now.Add(recvRekeyAge)
	if _, rekeyNow := a.peer.Received(fresh, true, now); !rekeyNow {
		t.Fatal("no rekey asked once the current keypair we initiated is old")
	}
}
