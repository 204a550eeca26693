package session

import (
	"errors"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// A handshake that proved another key than the Peer was made with is
// refused by Accept and AcceptResumed themselves: the holder's lookup
// (which the responder checked) may have changed since the Peer was made.
// The daemon used to check this itself and securesession not at all, so a
// key its lookup newly named was accepted onto the peer holding the old one.
// The refusal releases the index, zeroes what it was handed and installs
// nothing.
func TestAcceptRefusesReplacedPeerKey(t *testing.T) {
	now := t0
	_, b := newSides(t, &now)
	// b's lookup now names a new key for "a"; b.peer holds the old one.
	replacement, _ := handshake.GeneratePrivateKey(nil)
	b.peers["a"] = handshake.PeerInfo{PublicKey: replacement.PublicKey()}
	cfg := &handshake.Config{PeerID: []byte("a"), PrivateKey: replacement,
		Peers: lookup{"b": {PublicKey: b.host.PublicKey()}}, Now: func() time.Time { return now }}
	newA := NewHost(cfg, rekey.DefaultPolicy()).NewPeer(PeerConfig{ID: "b", PublicKey: b.host.PublicKey()}, NewMapRegistry())

	sess, idx := consumeFrom(t, newA, b, &now)
	checkRefused(t, b, "Accept", b.peer.Accept(sess, idx, now), sess, ErrPeerKeyChanged, now)

	// A ticket issued to the new key (by another holder sharing the
	// ticket ring), which the lookup accepts, resumes onto the peer that
	// holds the old one. A fresh session stands in for the resumed one:
	// only the ticket's key matters.
	sess, idx = consumeFrom(t, newA, b, &now)
	st := &handshake.TicketState{PeerID: "a", PeerStatic: replacement.PublicKey(), ResumptionSecret: [32]byte{7}, AuthTime: now}
	checkRefused(t, b, "AcceptResumed", b.peer.AcceptResumed(sess, st, idx, now), sess, ErrPeerKeyChanged, now)
	if st.ResumptionSecret != ([32]byte{}) {
		t.Fatal("AcceptResumed: the refused ticket state was not zeroed")
	}
}

// The same for the pre-shared key: b's lookup now gives "a" another PSK
// (a reload changed only preshared_key; b.peer is the Peer made before it),
// and a handshake under that PSK, consumed with the lookup's answer, must
// not be installed on the Peer made with the old one. An operator revokes a
// PSK by changing it: the old one must stop working as firmly as an old
// public key does. Accept compared only the static key, so such a session
// was installed and lasted up to reject_after.
func TestAcceptRefusesChangedPSK(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	psk := handshake.PresharedKey{1, 2, 3}
	info := b.peers["a"]
	info.PresharedKey = psk
	b.peers["a"] = info
	// a, same static key, with the new PSK (b answers with the lookup's
	// PSK whatever a mixed: message 1 does not depend on it).
	newA := a.host.NewPeer(PeerConfig{ID: "b", PublicKey: b.host.PublicKey(), PresharedKey: psk}, a.reg)

	sess, idx := consumeFrom(t, newA, b, &now)
	if sess.PSKTag != psk.Tag() {
		t.Fatal("the responder's session does not name the lookup's pre-shared key")
	}
	checkRefused(t, b, "Accept", b.peer.Accept(sess, idx, now), sess, ErrPeerPSKChanged, now)

	// AcceptResumed: the ticket names the Peer's key, the session was made
	// under the lookup's PSK (a fresh session stands in for the resumed one).
	sess, idx = consumeFrom(t, newA, b, &now)
	st := &handshake.TicketState{PeerID: "a", PeerStatic: b.peer.PublicKey(), ResumptionSecret: [32]byte{7}, AuthTime: now}
	checkRefused(t, b, "AcceptResumed", b.peer.AcceptResumed(sess, st, idx, now), sess, ErrPeerPSKChanged, now)
	if st.ResumptionSecret != ([32]byte{}) {
		t.Fatal("AcceptResumed: the refused ticket state was not zeroed")
	}

	// The Peer made with the new PSK takes the same handshake.
	fresh := b.host.NewPeer(PeerConfig{ID: "a", PublicKey: b.peer.PublicKey(), PresharedKey: psk}, b.reg)
	sess, idx = consumeFrom(t, newA, b, &now)
	if err := fresh.Accept(sess, idx, now); err != nil {
		t.Fatalf("Accept on the Peer made with the lookup's PSK: %v", err)
	}
}

// consumeFrom has initiator send an initiation that b's host consumes,
// under an index of b's registry.
func consumeFrom(t *testing.T, initiator *Peer, b *side, now *time.Time) (*handshake.Session, uint32) {
	t.Helper()
	*now = now.Add(time.Second) // past the per-peer rate limit
	msg, _, err := initiator.Initiate(*now, "x")
	if err != nil {
		t.Fatal(err)
	}
	idx := b.reg.Reserve()
	_, sess, err := b.host.ConsumeInitiation(msg, idx)
	if err != nil {
		t.Fatalf("ConsumeInitiation under the keys the lookup names: %v", err)
	}
	return sess, idx
}

// checkRefused checks what a refusal by Accept or AcceptResumed leaves:
// the error, the index released, the session zeroed, nothing installed and
// no problem written (an unconfigured key is not this peer's problem).
func checkRefused(t *testing.T, b *side, what string, err error, sess *handshake.Session, want error, now time.Time) {
	t.Helper()
	if !errors.Is(err, want) || !errors.Is(err, ErrPeerKeyChanged) || !errors.Is(err, handshake.ErrKeyMismatch) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
	if b.reg.Len() != 0 {
		t.Fatalf("%s: the refused handshake's index was not released", what)
	}
	if sess.SendKey != ([32]byte{}) || sess.RecvKey != ([32]byte{}) || sess.ResumptionSecret != ([32]byte{}) {
		t.Fatalf("%s: the refused session was not zeroed", what)
	}
	if prev, cur, next := b.peer.Slots(); prev != nil || cur != nil || next != nil {
		t.Fatalf("%s: the refused handshake installed a keypair", what)
	}
	if pr := b.peer.Status(now).Problem; pr.Reason != ReasonNone {
		t.Fatalf("%s: an unconfigured key wrote the problem: %q", what, pr)
	}
}
