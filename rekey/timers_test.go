package rekey

import (
	"math"
	"testing"
	"time"
)

func half() float64 { return 0.5 }

// tunnelLoop plays the tunnel's per-peer goroutine: sleep until NextDeadline,
// call Due, act (sending an initiation calls HandshakeInitiated). It stops at
// end or when nothing is scheduled, and returns the times of each action.
func tunnelLoop(t *testing.T, tm *Timers, now, end time.Time) (inits, keepalives, giveUps, zeros []time.Time) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		a := tm.Due(now)
		if a&ActSendInitiation != 0 {
			inits = append(inits, now)
			tm.HandshakeInitiated(now)
		}
		if a&ActSendKeepalive != 0 {
			keepalives = append(keepalives, now)
			tm.AuthenticatedSent(now)
		}
		if a&ActGiveUp != 0 {
			giveUps = append(giveUps, now)
		}
		if a&ActZeroKeys != 0 {
			zeros = append(zeros, now)
		}
		next := tm.NextDeadline()
		if next.IsZero() || next.After(end) {
			return
		}
		if next.Before(now) {
			t.Fatalf("NextDeadline %v is before now %v after Due", next.Sub(t0), now.Sub(t0))
		}
		now = next
	}
	t.Fatal("timer loop did not settle")
	return
}

func TestRetriesWithJitterThenGivesUpOnce(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.WantHandshake(t0)
	inits, _, giveUps, _ := tunnelLoop(t, tm, t0, at(200*time.Second))
	if len(inits) == 0 || !inits[0].Equal(t0) {
		t.Fatalf("first initiation at %v, want at once", inits)
	}
	wantGap := p.RekeyTimeout + p.RekeyJitter/2
	for i := 1; i < len(inits); i++ {
		if gap := inits[i].Sub(inits[i-1]); gap != wantGap {
			t.Fatalf("retry %d after %v, want RekeyTimeout+jitter = %v", i, gap, wantGap)
		}
	}
	if len(giveUps) != 1 {
		t.Fatalf("gave up %d times, want once", len(giveUps))
	}
	if g := giveUps[0].Sub(t0); g < p.RekeyAttemptTime || g > p.RekeyAttemptTime+wantGap {
		t.Fatalf("gave up after %v, want within one retry of %v", g, p.RekeyAttemptTime)
	}
	if last := inits[len(inits)-1]; !last.Before(giveUps[0]) {
		t.Fatal("initiation sent at or after giving up")
	}
	if tm.Attempts() != len(inits) || tm.Handshaking() {
		t.Fatalf("Attempts = %d (want %d), Handshaking = %v (want false)", tm.Attempts(), len(inits), tm.Handshaking())
	}
	// A later want starts over, and is asked for again.
	now := giveUps[0].Add(time.Minute)
	tm.WantHandshake(now)
	if tm.Due(now)&ActSendInitiation == 0 {
		t.Fatal("no initiation for a new want after giving up")
	}
}

func TestInitiationAtMostOncePerRekeyTimeout(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.HandshakeInitiated(t0)
	tm.HandshakeCompleted(at(100 * time.Millisecond))
	// Everything wants keys again at once (say the new key hit a limit).
	var sent []time.Time
	for now := at(200 * time.Millisecond); now.Before(at(30 * time.Second)); now = now.Add(50 * time.Millisecond) {
		tm.WantHandshake(now)
		if tm.Due(now)&ActSendInitiation != 0 {
			sent = append(sent, now)
			tm.HandshakeInitiated(now)
			tm.HandshakeCompleted(now) // answered at once, and wanted again
		}
	}
	prev := t0
	for _, s := range sent {
		if s.Sub(prev) < p.RekeyTimeout {
			t.Fatalf("initiation at %v only %v after the previous one", s.Sub(t0), s.Sub(prev))
		}
		prev = s
	}
	if len(sent) < 5 {
		t.Fatalf("only %d initiations in 30 s of constant want", len(sent))
	}
}

func TestTunnelThatCannotSendIsAskedOncePerTimeout(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.WantHandshake(t0)
	if tm.Due(t0)&ActSendInitiation == 0 {
		t.Fatal("no initiation asked for")
	}
	// The tunnel had no endpoint and never called HandshakeInitiated.
	if a := tm.Due(t0); a != 0 {
		t.Fatalf("second Due at the same instant = %v, want nothing", a)
	}
	var asks, giveUps int
	for now := t0; now.Before(at(100 * time.Second)); now = now.Add(100 * time.Millisecond) {
		a := tm.Due(now)
		if a&ActSendInitiation != 0 {
			asks++
		}
		if a&ActGiveUp != 0 {
			giveUps++
		}
	}
	if asks > int(p.RekeyAttemptTime/p.RekeyTimeout) || giveUps != 1 {
		t.Fatalf("asked %d times and gave up %d times; want at most %d asks and one give-up",
			asks, giveUps, p.RekeyAttemptTime/p.RekeyTimeout)
	}
}

func TestHandshakeCompletedStopsRetries(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.WantHandshake(t0)
	tm.Due(t0)
	tm.HandshakeInitiated(t0)
	tm.HandshakeCompleted(at(time.Second))
	if tm.Attempts() != 0 || tm.Handshaking() {
		t.Fatal("attempts not reset by a completed handshake")
	}
	if next := tm.NextDeadline(); !next.Equal(at(time.Second + 3*p.RejectAfterTime)) {
		t.Fatalf("NextDeadline = %v, want only the zero-keys timer", next.Sub(t0))
	}
	if a := tm.Due(at(10 * time.Second)); a != 0 {
		t.Fatalf("Due after completion = %v, want nothing", a)
	}
}

func TestNewHandshakeWhenSentDataIsNotAnswered(t *testing.T) {
	p := DefaultPolicy()
	deadline := p.KeepaliveTimeout + p.RekeyTimeout + p.RekeyJitter/2

	tm := NewTimers(p, half)
	tm.DataSent(t0)
	tm.DataSent(at(5 * time.Second)) // counts from the first unanswered packet
	if a := tm.Due(at(deadline - time.Millisecond)); a != 0 {
		t.Fatalf("Due before the deadline = %v", a)
	}
	if a := tm.Due(at(deadline)); a&ActSendInitiation == 0 {
		t.Fatalf("Due at %v with no answer = %v, want an initiation", deadline, a)
	}

	tm = NewTimers(p, half)
	tm.DataSent(t0)
	tm.AuthenticatedReceived(at(10 * time.Second))
	if a := tm.Due(at(time.Minute)); a != 0 {
		t.Fatalf("Due after an answer = %v, want nothing", a)
	}
}

func TestPassiveKeepaliveOnce(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.DataReceived(t0)
	tm.DataReceived(at(3 * time.Second))
	if a := tm.Due(at(p.KeepaliveTimeout - time.Millisecond)); a != 0 {
		t.Fatalf("keepalive early: %v", a)
	}
	if a := tm.Due(at(p.KeepaliveTimeout)); a != ActSendKeepalive {
		t.Fatalf("Due at KeepaliveTimeout = %v, want one keepalive", a)
	}
	if a := tm.Due(at(time.Hour)); a != 0 {
		t.Fatalf("second keepalive without new data: %v", a)
	}

	tm = NewTimers(p, half)
	tm.DataReceived(t0)
	tm.AuthenticatedSent(at(5 * time.Second)) // we answered with data
	if a := tm.Due(at(time.Minute)); a != 0 {
		t.Fatalf("keepalive though we sent: %v", a)
	}
}

func TestPersistentKeepalive(t *testing.T) {
	p := DefaultPolicy()
	p.PersistentKeepalive = 25 * time.Second
	tm := NewTimers(p, half)
	tm.AuthenticatedSent(t0)
	_, keepalives, _, _ := tunnelLoop(t, tm, t0, at(100*time.Second))
	want := []time.Duration{25 * time.Second, 50 * time.Second, 75 * time.Second, 100 * time.Second}
	if len(keepalives) != len(want) {
		t.Fatalf("keepalives at %v, want every 25 s", keepalives)
	}
	for i, k := range keepalives {
		if k.Sub(t0) != want[i] {
			t.Fatalf("keepalive %d at %v, want %v", i, k.Sub(t0), want[i])
		}
	}
	// Traffic postpones it; a tunnel that could not send is still re-asked.
	tm = NewTimers(p, half)
	tm.AuthenticatedSent(t0)
	tm.AuthenticatedSent(at(20 * time.Second))
	if a := tm.Due(at(25 * time.Second)); a != 0 {
		t.Fatalf("keepalive though we sent 5 s ago: %v", a)
	}
	if a := tm.Due(at(45 * time.Second)); a != ActSendKeepalive {
		t.Fatalf("Due at 45 s = %v, want keepalive", a)
	}
	if a := tm.Due(at(70 * time.Second)); a != ActSendKeepalive {
		t.Fatalf("Due at 70 s without a send = %v, want keepalive again", a)
	}

	p.PersistentKeepalive = 0
	tm = NewTimers(p, half)
	tm.AuthenticatedSent(t0)
	if next := tm.NextDeadline(); !next.IsZero() {
		t.Fatalf("persistent keepalive off but a deadline at %v", next.Sub(t0))
	}
}

func TestZeroKeysAfterThreeRejectAfter(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.HandshakeCompleted(t0)
	tm.HandshakeCompleted(at(100 * time.Second)) // a newer handshake postpones it
	if a := tm.Due(at(3 * p.RejectAfterTime)); a != 0 {
		t.Fatalf("zeroed 3*reject_after after an old handshake: %v", a)
	}
	end := at(100*time.Second + 3*p.RejectAfterTime)
	if a := tm.Due(end); a != ActZeroKeys {
		t.Fatalf("Due at 3*reject_after after the last handshake = %v, want ActZeroKeys", a)
	}
	if a := tm.Due(end.Add(time.Hour)); a != 0 {
		t.Fatalf("ActZeroKeys repeated: %v", a)
	}
	if !tm.NextDeadline().IsZero() {
		t.Fatal("a deadline remains with nothing to do")
	}
}

func TestJitterSourceIsBounded(t *testing.T) {
	p := DefaultPolicy()
	for _, f := range []float64{-1, 1, 7, math.NaN(), math.Inf(1)} {
		tm := NewTimers(p, func() float64 { return f })
		tm.HandshakeInitiated(t0)
		if gap := tm.NextDeadline().Sub(t0); gap < p.RekeyTimeout || gap > p.RekeyTimeout+p.RekeyJitter {
			t.Fatalf("rand()=%v gave a retry after %v", f, gap)
		}
	}
	tm := NewTimers(p, nil)
	tm.HandshakeInitiated(t0)
	if gap := tm.NextDeadline().Sub(t0); gap < p.RekeyTimeout || gap >= p.RekeyTimeout+p.RekeyJitter {
		t.Fatalf("default jitter gave a retry after %v", gap)
	}
}

func TestSetPersistentKeepaliveOnReload(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.HandshakeCompleted(t0) // other state must survive the reload
	tm.SetPersistentKeepalive(25*time.Second, at(time.Second))
	if a := tm.Due(at(26 * time.Second)); a != ActSendKeepalive {
		t.Fatalf("Due one interval after turning it on = %v, want keepalive", a)
	}
	tm.SetPersistentKeepalive(25*time.Second, at(30*time.Second)) // unchanged: no restart
	if next := tm.NextDeadline(); !next.Equal(at(51 * time.Second)) {
		t.Fatalf("NextDeadline = %v, want the keepalive re-armed at 51s", next.Sub(t0))
	}
	tm.SetPersistentKeepalive(0, at(30*time.Second))
	if next := tm.NextDeadline(); !next.Equal(at(3 * p.RejectAfterTime)) {
		t.Fatalf("persistent keepalive turned off: NextDeadline = %v, want only zero-keys", next.Sub(t0))
	}
}

func TestSetPolicyAppliesNewRetryInterval(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.WantHandshake(t0)
	if a := tm.Due(t0); a != ActSendInitiation {
		t.Fatalf("first Due = %v, want an initiation", a)
	}
	tm.HandshakeInitiated(t0)
	faster := p
	faster.RekeyTimeout, faster.RekeyJitter = time.Second, 0
	tm.SetPolicy(faster, at(time.Second))
	tm.HandshakeInitiated(at(5*time.Second + p.RekeyJitter/2)) // the retry armed under the old policy
	if a := tm.Due(at(6*time.Second + p.RekeyJitter/2)); a != ActSendInitiation {
		t.Fatalf("Due one new RekeyTimeout after the retry = %v, want an initiation", a)
	}
	if tm.Attempts() != 2 {
		t.Fatalf("attempts = %d, want 2 (state kept across SetPolicy)", tm.Attempts())
	}
}

// Attempts counts the initiations of the handshake under way ("no answer
// after N attempts"). WantHandshake starts the count over; an initiation
// the holder sends on its own (a failover, a cookie reply) that starts a
// handshake did not, so after a give-up it went on from the abandoned
// handshake's count, and the next retry reported the sum.
func TestAttemptsCountOnlyTheHandshakeUnderWay(t *testing.T) {
	p := DefaultPolicy()
	tm := NewTimers(p, half)
	tm.WantHandshake(t0)
	_, _, giveUps, _ := tunnelLoop(t, tm, t0, at(200*time.Second))
	if len(giveUps) != 1 || tm.Handshaking() {
		t.Fatalf("setup: gave up %d times, handshaking %v", len(giveUps), tm.Handshaking())
	}
	start := giveUps[0].Add(time.Minute)
	tm.HandshakeInitiated(start) // not handshaking: this starts a new one
	if n := tm.Attempts(); n != 1 {
		t.Fatalf("the first initiation of a new handshake is attempt %d, want 1", n)
	}
}
