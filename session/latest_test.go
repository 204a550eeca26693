package session

import (
	"testing"
	"time"
)

// Latest tells the keypairs that may steer the endpoint: the current one
// and the responder's next (a packet under it confirms it), not the
// previous one, nor nil.
func TestLatestIsCurrentOrNext(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	old := a.complete(t, b.answer(t, msg, now), now)
	bOld := nextOf(b.peer)
	if !a.peer.Latest(old) || !b.peer.Latest(bOld) {
		t.Fatal("the initiator's current or the responder's next is not latest")
	}
	b.peer.Received(bOld, false, now)
	now = now.Add(time.Second)
	msg, _, _ = a.peer.Initiate(now, "x")
	fresh := a.complete(t, b.answer(t, msg, now), now)
	if a.peer.Latest(old) || !a.peer.Latest(fresh) {
		t.Fatal("initiator: the previous keypair is latest, or the current one is not")
	}
	bFresh := nextOf(b.peer)
	if !b.peer.Latest(bOld) || !b.peer.Latest(bFresh) {
		t.Fatal("responder: the current or the pending next keypair is not latest")
	}
	b.peer.Received(bFresh, false, now)
	if b.peer.Latest(bOld) || !b.peer.Latest(bFresh) {
		t.Fatal("responder after promotion: the previous keypair is latest, or the current one is not")
	}
	if a.peer.Latest(nil) {
		t.Fatal("nil is latest")
	}
}
