package session

import (
	"bytes"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// The device builds its saved state by appending one peer's snapshot after
// another into one buffer. When that buffer is full, Snapshot must clear the
// array it moves away from: it holds the earlier peers' keys and resumption
// secrets, which append would leave in freed memory. The bytes that moved
// still restore.
func TestSnapshotClearsTheBufferItLeaves(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	a.complete(t, b.answer(t, msg, now), now) // a keeps the resumption secret too
	earlier := bytes.Repeat([]byte{0xa5}, 40) // another peer's state, full
	out := a.peer.Snapshot(earlier, "198.18.0.2:51820", true)
	if !bytes.Equal(out[:40], bytes.Repeat([]byte{0xa5}, 40)) {
		t.Fatal("the earlier bytes did not move with the snapshot")
	}
	if !bytes.Equal(earlier, make([]byte, 40)) {
		t.Fatal("the array Snapshot moved away from was left as it was")
	}
	p := NewHost(a.host.cfg, rekey.DefaultPolicy()).NewPeer(a.peer.cfg, NewMapRegistry())
	if _, r, err := p.Restore(out[40:], now); err != nil || r.Sessions != 1 {
		t.Fatalf("the moved snapshot does not restore: %+v, %v", r, err)
	}
	clear(out)
}

// Snapshot reserves what it writes before writing it: a snapshot of the
// tickets only (what `stunnel state save` writes while running) fills
// exactly one array, with or without a held ticket and its secret. A wrong
// size would let append move the secret mid-write and leave a copy.
func TestSnapshotReservesExactlyWhatItWrites(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	kp := a.complete(t, b.answer(t, msg, now), now)
	check := func(what string) {
		t.Helper()
		out := a.peer.Snapshot(nil, "198.18.0.2:51820", false)
		if len(out) != cap(out) {
			t.Fatalf("%s: %d bytes written in an array of %d", what, len(out), cap(out))
		}
		clear(out)
	}
	check("no ticket")
	tm, err := handshake.MarshalTicketMessage(bytes.Repeat([]byte{7}, 100), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peer.ReceiveControl(tm, kp, now); err != nil || a.peer.held == nil {
		t.Fatalf("no ticket held: %v", err)
	}
	check("a held ticket")
}
