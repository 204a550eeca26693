package session

import (
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/fakeclock"
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

// Clear (stunnel disconnect PEER) abandons the handshake under way, and
// the next packet starts a new one. The timers went on as before: the
// abandoned handshake's retries continued, and its RekeyAttemptTime, which
// counted from when it began, gave up on the handshake the next packet
// wanted, dropping what waited for it, seconds after it started.
func TestClearStartsTheNextHandshakeAfresh(t *testing.T) {
	now := t0
	a, _ := newSides(t, &now)
	policy := rekey.DefaultPolicy()
	a.peer.WantHandshake(now)
	if _, _, err := a.peer.Initiate(now, "x"); err != nil {
		t.Fatal(err)
	}
	for now.Before(t0.Add(80 * time.Second)) { // unanswered
		now = now.Add(time.Second)
		if a.peer.Due(now)&rekey.ActSendInitiation != 0 {
			if _, _, err := a.peer.Initiate(now, "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.peer.Clear()
	if act := a.peer.Due(now.Add(policy.RekeyTimeout)); act&rekey.ActSendInitiation != 0 {
		t.Fatal("the handshake Clear abandoned is still retried")
	}

	now = now.Add(policy.RekeyTimeout) // a packet after the disconnect wants keys
	start := now
	if act := a.peer.WantHandshake(now); act&rekey.ActSendInitiation == 0 {
		t.Fatalf("the first packet after Clear started no handshake: %v", act)
	}
	if _, attempt, err := a.peer.Initiate(now, "x"); err != nil || attempt != 0 {
		t.Fatalf("first initiation after Clear: attempt %d, %v", attempt, err)
	}
	for now.Before(start.Add(policy.RekeyAttemptTime - time.Second)) {
		now = now.Add(time.Second)
		act := a.peer.Due(now)
		if act&rekey.ActGiveUp != 0 {
			t.Fatalf("gave up %v after the handshake began: the abandoned one's deadline", now.Sub(start))
		}
		if act&rekey.ActSendInitiation != 0 {
			if _, _, err := a.peer.Initiate(now, "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A held ticket's resumption secret is zeroed once the ticket expires
// (dropStaleSecretsLocked), but only when Due runs, and a holder sleeps
// until NextDeadline (the tunnel's schedule adds only its keypairs'
// expiry). NextDeadline left the ticket's expiry out: on a peer that went
// quiet, whose keys were cleared after 3 x reject_after, nothing was armed
// any more, and the secret of a ticket the peer would refuse stayed in
// memory for as long as the peer stayed quiet.
func TestNextDeadlineIncludesTheHeldTicketsExpiry(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	policy := rekey.DefaultPolicy()
	msg, _, _ := a.peer.Initiate(now, "x")
	kp := a.complete(t, b.answer(t, msg, now), now)
	life := time.Hour
	tm, err := handshake.MarshalTicketMessage([]byte("ticket"), life)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peer.ReceiveControl(tm, kp, now); err != nil {
		t.Fatal(err)
	}
	expires := now.Add(life)

	// The holder wakes only at NextDeadline, until it names nothing.
	for wakes := 0; ; wakes++ {
		next := a.peer.NextDeadline()
		if next.IsZero() || wakes > 100 {
			break
		}
		if next.After(expires) {
			t.Fatalf("next wake at %v, after the held ticket expires (%v)", next.Sub(t0), expires.Sub(t0))
		}
		now = next
		a.peer.Due(now)
	}
	if held := a.peer.held; held != nil {
		t.Fatalf("quiet since %v, the peer sleeps for good with the ticket that expired at %v still held",
			3*policy.RejectAfterTime, expires.Sub(t0))
	}
}

// A restored ticket's times come from the state file: wall clock only, no
// monotonic reading. As a deadline (NextDeadline) its expiry is then
// reached on the holder's monotonic clock, which is what the tunnel's
// schedule sleeps on, while Due compared it with the wall clock. After the
// wall clock stepped back, Due at the deadline found the ticket not yet
// expired and NextDeadline named the same, past, deadline again: the
// schedule spun for as long as the step. Restored times are anchored to
// the monotonic clock at the restore, as restored keypairs are.
func TestRestoredTicketExpiryIsNoSpinningDeadline(t *testing.T) {
	clk := fakeclock.NewMonotonic()
	now := clk.Now()
	a, b := newSides(t, &now)
	msg, _, _ := a.peer.Initiate(now, "x")
	kp := a.complete(t, b.answer(t, msg, now), now)
	tm, err := handshake.MarshalTicketMessage([]byte("ticket"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peer.ReceiveControl(tm, kp, now); err != nil {
		t.Fatal(err)
	}
	saved := a.peer.Snapshot(nil, "198.18.0.2:51820", false)

	clk.Advance(time.Second) // the restart
	now = clk.Now()
	p := NewHost(a.host.cfg, rekey.DefaultPolicy()).NewPeer(a.peer.cfg, NewMapRegistry())
	if _, r, err := p.RestoreTickets(saved, now); err != nil || !r.Ticket {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	base := now // the holder's schedule counts from here, monotonic
	clk.StepWall(-time.Hour)

	for wakes := 0; ; wakes++ {
		next := p.NextDeadline()
		if next.IsZero() {
			break
		}
		if wakes > 50 {
			t.Fatalf("woken %d times at %v with the restored ticket still held: the schedule spins", wakes, clk.Now().Sub(base))
		}
		if ahead := next.Sub(base) - clk.Now().Sub(base); ahead > 0 {
			clk.Advance(ahead)
		}
		p.Due(clk.Now())
	}
	if elapsed := clk.Now().Sub(base); elapsed > time.Hour {
		t.Fatalf("the restored ticket was dropped %v after the restore, after it expired", elapsed)
	}
}
