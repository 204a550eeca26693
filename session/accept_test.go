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

	consume := func() (*handshake.Session, uint32) {
		t.Helper()
		now = now.Add(time.Second) // past the per-peer rate limit
		msg, _, err := newA.Initiate(now, "x")
		if err != nil {
			t.Fatal(err)
		}
		idx := b.reg.Reserve()
		_, sess, err := b.host.ConsumeInitiation(msg, idx)
		if err != nil {
			t.Fatalf("ConsumeInitiation under the key the lookup names: %v", err)
		}
		return sess, idx
	}
	check := func(what string, err error, sess *handshake.Session) {
		t.Helper()
		if !errors.Is(err, ErrPeerKeyChanged) || !errors.Is(err, handshake.ErrKeyMismatch) {
			t.Fatalf("%s under a replaced key: %v, want ErrPeerKeyChanged", what, err)
		}
		if b.reg.Len() != 0 {
			t.Fatalf("%s: the refused handshake's index was not released", what)
		}
		if sess.SendKey != ([32]byte{}) || sess.ResumptionSecret != ([32]byte{}) {
			t.Fatalf("%s: the refused session was not zeroed", what)
		}
		if prev, cur, next := b.peer.Slots(); prev != nil || cur != nil || next != nil {
			t.Fatalf("%s: the refused handshake installed a keypair", what)
		}
		if pr := b.peer.Status(now).Problem; pr.Reason != ReasonNone {
			t.Fatalf("%s: an unconfigured key wrote the problem: %q", what, pr)
		}
	}

	sess, idx := consume()
	check("Accept", b.peer.Accept(sess, idx, now), sess)

	// A ticket issued to the new key (by another holder sharing the
	// ticket ring), which the lookup accepts, resumes onto the peer that
	// holds the old one. A fresh session stands in for the resumed one:
	// only the ticket's key matters.
	sess, idx = consume()
	st := &handshake.TicketState{PeerID: "a", PeerStatic: replacement.PublicKey(), ResumptionSecret: [32]byte{7}, AuthTime: now}
	check("AcceptResumed", b.peer.AcceptResumed(sess, st, idx, now), sess)
	if st.ResumptionSecret != ([32]byte{}) {
		t.Fatal("AcceptResumed: the refused ticket state was not zeroed")
	}
}
