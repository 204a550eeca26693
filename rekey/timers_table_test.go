package rekey

import (
	"slices"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
)

// TestTimerRules drives one peer's timers and keys with a fake clock, one
// rule of WireGuard's timers (whitepaper section 6) per row: at each listed
// instant the row's events happen, then Due is asked and must return
// exactly the wanted actions (0: nothing, which also proves "not before").
func TestTimerRules(t *testing.T) {
	p := DefaultPolicy()
	p.PersistentKeepalive = 25 * time.Second
	jit := p.RekeyJitter / 2 // half()
	type step struct {
		at   time.Duration
		do   func(tm *Timers, kps *Keypairs, now time.Time)
		want Action
	}
	sent := func(tm *Timers, _ *Keypairs, now time.Time) { tm.AuthenticatedSent(now); tm.DataSent(now) }
	recvData := func(tm *Timers, _ *Keypairs, now time.Time) { tm.AuthenticatedReceived(now); tm.DataReceived(now) }
	recvKeepalive := func(tm *Timers, _ *Keypairs, now time.Time) { tm.AuthenticatedReceived(now) }
	want := func(tm *Timers, _ *Keypairs, now time.Time) { tm.WantHandshake(now) }
	initiated := func(tm *Timers, _ *Keypairs, now time.Time) { tm.HandshakeInitiated(now) }
	completed := func(tm *Timers, _ *Keypairs, now time.Time) { tm.HandshakeCompleted(now) }
	// rekeyOnSend and rekeyOnReceive play the tunnel's packet paths: they
	// ask the current keypair and want a handshake when it says so.
	rekeyOnSend := func(tm *Timers, kps *Keypairs, now time.Time) {
		if c := kps.Current(now); c != nil && c.NeedsRekeyOnSend(now) {
			tm.WantHandshake(now)
		}
	}
	rekeyOnReceive := func(tm *Timers, kps *Keypairs, now time.Time) {
		if kps.NeedsRekeyOnReceive(now) {
			tm.WantHandshake(now)
		}
	}
	// Retries every RekeyTimeout plus jitter; the first one due at or
	// after RekeyAttemptTime gives up instead, and nothing follows.
	retries := []step{{0, want, ActSendInitiation}, {0, initiated, 0}}
	gap := p.RekeyTimeout + jit
	for at := gap; ; at += gap {
		retries = append(retries, step{at - time.Millisecond, nil, 0})
		if at >= p.RekeyAttemptTime {
			retries = append(retries, step{at, nil, ActGiveUp}, step{at + time.Minute, nil, 0})
			break
		}
		retries = append(retries, step{at, nil, ActSendInitiation}, step{at, initiated, 0})
	}
	recvRekey := p.RejectAfterTime - p.KeepaliveTimeout - p.RekeyTimeout
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		initiator bool // the current keypair (made at 0) is ours
		noPersist bool
		steps     []step
	}{
		{"initiator rekeys on send at rekey_after, not before", true, true, []step{
			{p.RekeyAfterTime - ms, rekeyOnSend, 0},
			{p.RekeyAfterTime, rekeyOnSend, ActSendInitiation},
		}},
		{"responder never rekeys on send by time", false, true, []step{
			{p.RekeyAfterTime, rekeyOnSend, 0},
			{p.RejectAfterTime - ms, rekeyOnSend, 0},
		}},
		{"receive-only initiator rekeys at reject-keepalive-rekey_timeout", true, true, []step{
			{recvRekey - ms, rekeyOnReceive, 0},
			{recvRekey, rekeyOnReceive, ActSendInitiation},
		}},
		{"receive-only responder does not rekey by time", false, true, []step{
			{recvRekey, rekeyOnReceive, 0},
		}},
		{"handshake retried every rekey_timeout+jitter, abandoned at rekey_attempt_time", true, true, retries},
		{"passive keepalive after data received and nothing sent", true, true, []step{
			{0, recvData, 0},
			{p.KeepaliveTimeout - ms, nil, 0},
			{p.KeepaliveTimeout, nil, ActSendKeepalive},
			{2 * p.KeepaliveTimeout, nil, 0},
		}},
		{"no passive keepalive when we answered", true, true, []step{
			{0, recvData, 0},
			{time.Second, sent, 0},
			{p.KeepaliveTimeout, nil, 0},
		}},
		{"no passive keepalive for a keepalive", true, true, []step{
			{0, recvKeepalive, 0},
			{p.KeepaliveTimeout, nil, 0},
		}},
		{"persistent keepalive when nothing was sent for its interval", true, false, []step{
			{0, sent, 0},
			{p.PersistentKeepalive - ms, recvKeepalive, 0},
			{p.PersistentKeepalive, nil, ActSendKeepalive},
			{p.PersistentKeepalive, func(tm *Timers, _ *Keypairs, now time.Time) { tm.AuthenticatedSent(now) }, 0},
			{2*p.PersistentKeepalive - ms, nil, 0},
			{2 * p.PersistentKeepalive, nil, ActSendKeepalive},
		}},
		{"new handshake when sent data is not answered", true, true, []step{
			{0, sent, 0},
			{p.KeepaliveTimeout + p.RekeyTimeout + jit - ms, nil, 0},
			{p.KeepaliveTimeout + p.RekeyTimeout + jit, nil, ActSendInitiation},
		}},
		{"no new handshake when sent data is answered", true, true, []step{
			{0, sent, 0},
			{time.Second, recvKeepalive, 0},
			{p.KeepaliveTimeout + p.RekeyTimeout + jit, nil, 0},
		}},
		{"keys zeroed 3 x reject_after after the last handshake", true, true, []step{
			{0, completed, 0},
			{3*p.RejectAfterTime - ms, nil, 0},
			{3 * p.RejectAfterTime, nil, ActZeroKeys},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := p
			if tc.noPersist {
				pol.PersistentKeepalive = 0
			}
			clock := fakeclock.New(t0)
			tm := NewTimers(pol, half)
			var kps Keypairs
			ik, rk := pair(t, pol, t0, 1, 2)
			if tc.initiator {
				kps.Install(ik)
			} else {
				kps.Install(rk)
				kps.Received(rk)
			}
			if !slices.IsSortedFunc(tc.steps, func(a, b step) int { return int(a.at - b.at) }) {
				t.Fatal("steps out of order")
			}
			for _, s := range tc.steps {
				clock.Advance(t0.Add(s.at).Sub(clock.Now()))
				now := clock.Now()
				if s.do != nil {
					s.do(tm, &kps, now)
				}
				if got := tm.Due(now); got != s.want {
					t.Fatalf("at %v: Due = %b, want %b", s.at, got, s.want)
				}
			}
		})
	}
}
