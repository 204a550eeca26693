package session

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/replay"
)

// savedHead is a saved peer state up to and including its keypair count
// (0 here), as Snapshot writes it for b's peer with no ticket held.
func savedHead(b *side) []byte {
	return b.peer.Snapshot(nil, "198.18.0.1:51820", false)
}

// savedEntry is one keypair entry as Snapshot writes it: slot, cipher,
// secret flag (and the secret when the flag is 1), then the keypair state.
func savedEntry(t *testing.T, slot, secretFlag byte, local uint32, now time.Time) []byte {
	t.Helper()
	f, err := replay.New(replay.DefaultWindow, rekey.DefaultRejectAfterMessages)
	if err != nil {
		t.Fatal(err)
	}
	st := &rekey.KeypairState{SendKey: [32]byte{1}, RecvKey: [32]byte{2}, LocalIndex: local, RemoteIndex: local + 1000,
		Created: now, SendCounter: 7, Replay: f.State(),
		RekeyAfter: rekey.DefaultRekeyAfterTime, RejectAfter: rekey.DefaultRejectAfterTime}
	e := []byte{slot, byte(handshake.CipherChaCha20Poly1305), secretFlag}
	if secretFlag == 1 {
		e = append(e, make([]byte, 32)...)
	}
	e, err = st.AppendBinary(e)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// savedState joins a head and entries, with the count set to len(entries).
func savedState(head []byte, entries ...[]byte) []byte {
	out := append([]byte(nil), head...)
	out[len(out)-1] = byte(len(entries))
	for _, e := range entries {
		out = append(out, e...)
	}
	return out
}

// A saved state is restored whole or not at all. Each of these can only
// come from a damaged state (Snapshot writes none of them), and each used
// to be taken in part: a slot number above next stopped the loop with no
// error, so the keypairs after it were silently lost and the ones before
// it restored; a ticket or secret flag other than 0 or 1 was read as 0;
// bytes after the last keypair were ignored. Now each is refused, with
// nothing registered.
func TestRestoreRefusesDamagedKeypairList(t *testing.T) {
	now := t0
	_, b := newSides(t, &now)
	head := savedHead(b)
	good := savedState(head, savedEntry(t, slotPrevious, 0, 11, now), savedEntry(t, slotCurrent, 0, 12, now))
	withTicketFlag := append([]byte(nil), good...)
	withTicketFlag[len(head)-2] = 2 // the ticket flag, just before the count
	for _, tc := range []struct {
		name  string
		state []byte
	}{
		{"slot above next", savedState(head, savedEntry(t, slotPrevious, 0, 11, now), savedEntry(t, 3, 0, 12, now), savedEntry(t, slotNext, 0, 13, now))},
		{"slot above next first", savedState(head, savedEntry(t, 200, 0, 11, now), savedEntry(t, slotCurrent, 0, 12, now))},
		{"secret flag 2", savedState(head, savedEntry(t, slotPrevious, 0, 11, now), savedEntry(t, slotCurrent, 2, 12, now))},
		{"ticket flag 2", withTicketFlag},
		{"bytes after the last keypair", append(append([]byte(nil), good...), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewMapRegistry()
			p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(b.peer.cfg, reg)
			_, r, err := p.Restore(tc.state, now)
			if !errors.Is(err, ErrStateFormat) {
				t.Fatalf("restored %+v, err %v; want ErrStateFormat", r, err)
			}
			if prev, cur, next := p.Slots(); prev != nil || cur != nil || next != nil || reg.Len() != 0 {
				t.Fatalf("a refused state left keypairs (%v %v %v) or %d indices", prev, cur, next, reg.Len())
			}
		})
	}
	reg := NewMapRegistry()
	p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(b.peer.cfg, reg)
	if _, r, err := p.Restore(good, now); err != nil || r.Sessions != 2 {
		t.Fatalf("the undamaged state: %+v, %v; want 2 sessions", r, err)
	}
}

// Two entries for one slot: the second used to take the slot over while
// the first stayed registered under its index, live and in no slot, so
// Clear never zeroed it and its index was never released. Snapshot writes
// each slot at most once, so the state is damaged: refused whole.
func TestRestoreRefusesOneSlotTwice(t *testing.T) {
	now := t0
	_, b := newSides(t, &now)
	for _, tc := range []struct {
		name    string
		entries [][]byte
	}{
		{"current twice", [][]byte{savedEntry(t, slotCurrent, 0, 11, now), savedEntry(t, slotCurrent, 0, 12, now)}},
		{"the first one expired", [][]byte{savedEntry(t, slotNext, 0, 11, now.Add(-time.Hour)), savedEntry(t, slotNext, 0, 12, now)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewMapRegistry()
			p := NewHost(b.host.cfg, rekey.DefaultPolicy()).NewPeer(b.peer.cfg, reg)
			_, r, err := p.Restore(savedState(savedHead(b), tc.entries...), now)
			if !errors.Is(err, ErrStateFormat) {
				t.Fatalf("restored %+v, err %v; want ErrStateFormat", r, err)
			}
			for _, idx := range []uint32{11, 12} {
				if kp, ok := reg.Lookup(idx); ok {
					t.Fatalf("index %d still registered (keypair zeroed: %v)", idx, kp != nil && kp.IsZeroed())
				}
			}
			p.Clear()
			if reg.Len() != 0 {
				t.Fatalf("%d indices registered after Clear", reg.Len())
			}
		})
	}
}

// A state saved while running (statefile CleanStop false) restores its
// ticket and never a keypair, even one that carries keypairs: their
// counters went on being used after the state was taken. RestoreTickets
// does not rely on Snapshot having left them out.
func TestRestoreTicketsTakesNoKeypair(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	kp := a.complete(t, b.answer(t, msg, now), now)
	tm, err := handshake.MarshalTicketMessage(bytes.Repeat([]byte{7}, 100), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peer.ReceiveControl(tm, kp, now); err != nil || a.peer.held == nil {
		t.Fatalf("no ticket held: %v", err)
	}
	saved := a.peer.Snapshot(nil, "198.18.0.2:51820", true) // with its keypair
	reg := NewMapRegistry()
	p := NewHost(a.host.cfg, rekey.DefaultPolicy()).NewPeer(a.peer.cfg, reg)
	_, r, err := p.RestoreTickets(saved, now)
	if err != nil || !r.Ticket || r.Sessions != 0 || len(r.Dropped) != 1 || r.Dropped[0] != "saved while running" {
		t.Fatalf("restored %+v, %v; want the ticket only, the keypair dropped as saved while running", r, err)
	}
	if prev, cur, next := p.Slots(); prev != nil || cur != nil || next != nil || reg.Len() != 0 || p.Status(now).Restored {
		t.Fatalf("a keypair came back from a state saved while running (%v %v %v, %d indices)", prev, cur, next, reg.Len())
	}
	if _, _, err := p.Restore(saved, now); !errors.Is(err, ErrRestoreTwice) {
		t.Fatalf("Restore after RestoreTickets: %v, want ErrRestoreTwice", err)
	}
	clear(saved)
}
