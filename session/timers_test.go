package session

import (
	"testing"
	"time"

	"stunnel/rekey"
)

// The zero-keys timer fires 3 x reject_after after the last completed
// handshake. A responder completes a handshake only when the initiator
// confirms it, so an initiation answered just before that deadline left the
// answered session in next while the timer still counted from the old
// handshake: it fired and Clear dropped the session the initiator had just
// made current. Its confirming packet then met an unknown index, and the
// link stayed down until the initiator's "no answer" timer (~15 s) made a
// new handshake. Keys answered are keys derived: they push the timer out.
func TestZeroKeysSparesTheSessionJustAnswered(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	policy := rekey.DefaultPolicy()
	msg, _, _ := a.peer.Initiate(now, "x")
	resp := b.answer(t, msg, now)
	a.complete(t, resp, now)
	if promoted, _ := b.peer.Received(nextOf(b.peer), false, now); !promoted {
		t.Fatal("the first session was not confirmed")
	}

	// Quiet until a second before b's zero-keys deadline; then a initiates.
	now = t0.Add(3*policy.RejectAfterTime - time.Second)
	a.peer.Due(now)
	b.peer.Due(now)
	msg, _, err := a.peer.Initiate(now, "x")
	if err != nil {
		t.Fatal(err)
	}
	resp = b.answer(t, msg, now)
	a.complete(t, resp, now)
	answered := nextOf(b.peer)

	now = now.Add(time.Second) // b's old deadline; a's confirmation is on its way
	b.peer.Due(now)
	if nextOf(b.peer) != answered || answered.IsZeroed() {
		t.Fatal("the zero-keys timer of the old handshake dropped the session b had just answered")
	}
	if promoted, _ := b.peer.Received(answered, false, now); !promoted || b.peer.Current(now) != answered {
		t.Fatal("a's confirmation did not promote the answered session")
	}
}
