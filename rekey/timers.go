package rekey

import (
	"math/rand/v2"
	"time"
)

// Action is what Due asks the tunnel to do; several may be set at once.
type Action uint8

const (
	// ActSendInitiation: send a handshake initiation, then call HandshakeInitiated.
	ActSendInitiation Action = 1 << iota
	// ActSendKeepalive: send an empty authenticated packet (or queue it and want
	// a handshake if there is no key), then call AuthenticatedSent.
	ActSendKeepalive
	// ActGiveUp: no handshake completed within RekeyAttemptTime: drop the
	// pending queue (counting the drops), stop retrying and log why, with
	// Attempts. A later WantHandshake starts over.
	ActGiveUp
	// ActZeroKeys: no handshake for 3*RejectAfterTime: Keypairs.Clear.
	ActZeroKeys
)

// Timers is one peer's timer state as a pure state machine, after
// wireguard-go's timers. No goroutines, no real timers: every method takes
// now; the tunnel's per-peer goroutine sleeps until NextDeadline (or an event)
// and then calls Due(now) and acts on the result.
//
// Not safe for concurrent use: the tunnel holds the peer's mutex around every
// call. A zero deadline field means "not armed".
type Timers struct {
	p    Policy
	rand func() float64 // jitter source in [0, 1)

	// Handshake (re)transmission.
	handshaking  bool      // keys are wanted and no handshake completed since
	wantStart    time.Time // when handshaking began; give up RekeyAttemptTime later
	retry        time.Time // next initiation due while handshaking
	lastInit     time.Time // last initiation sent (rate limit: one per RekeyTimeout)
	initSent     bool      // lastInit is meaningful
	attempts     int       // initiations of the handshake under way (or the last one)
	newHandshake time.Time // data sent and nothing received since: initiate at this time

	keepalive  time.Time // passive: data received, nothing sent since
	persistent time.Time // persistent keepalive (NAT), when PersistentKeepalive > 0
	zeroKeys   time.Time // 3*RejectAfterTime after the last handshake
}

// NewTimers returns idle timers under policy p. rand supplies jitter in
// [0, 1); nil means math/rand/v2.
//
// Persistent keepalive counts from the last authenticated packet sent; a
// tunnel that wants the first one at start calls WantHandshake (or sends a
// keepalive) when it brings the peer up, as wireguard-go does.
func NewTimers(p Policy, rand func() float64) *Timers {
	if rand == nil {
		rand = randFloat
	}
	return &Timers{p: p, rand: rand}
}

func randFloat() float64 { return rand.Float64() }

func (t *Timers) jitter() time.Duration {
	f := t.rand()
	if !(f >= 0 && f < 1) { // also catches NaN from a broken source
		f = 0
	}
	return time.Duration(f * float64(t.p.RekeyJitter))
}

// DataSent: a data packet (not a keepalive) was sent. If nothing is received
// within KeepaliveTimeout+RekeyTimeout, the peer may have lost our session:
// start a new handshake then.
func (t *Timers) DataSent(now time.Time) {
	if t.newHandshake.IsZero() {
		t.newHandshake = now.Add(t.p.KeepaliveTimeout + t.p.RekeyTimeout + t.jitter())
	}
}

// AuthenticatedSent: any authenticated packet (data, keepalive, handshake) was
// sent. It answers received data, so no passive keepalive is needed, and it
// keeps the NAT mapping open, so the persistent keepalive starts over.
func (t *Timers) AuthenticatedSent(now time.Time) {
	t.keepalive = time.Time{}
	if t.p.PersistentKeepalive > 0 {
		t.persistent = now.Add(t.p.PersistentKeepalive)
	}
}

// DataReceived: a data packet with payload arrived. If we send nothing within
// KeepaliveTimeout, send one keepalive so the peer knows the session works.
func (t *Timers) DataReceived(now time.Time) {
	if t.keepalive.IsZero() {
		t.keepalive = now.Add(t.p.KeepaliveTimeout)
	}
}

// AuthenticatedReceived: any authenticated packet arrived: the peer is alive,
// so no new handshake for want of an answer.
func (t *Timers) AuthenticatedReceived(now time.Time) {
	t.newHandshake = time.Time{}
}

// HandshakeInitiated: we sent an initiation (first try or retry). The next
// retry is due RekeyTimeout plus jitter later. It also counts as
// AuthenticatedSent. One sent while no handshake was under way (a
// failover, a cookie reply) starts one, as WantHandshake does.
func (t *Timers) HandshakeInitiated(now time.Time) {
	if !t.handshaking {
		t.handshaking = true
		t.wantStart = now
		t.attempts = 0
	}
	t.attempts++
	t.lastInit = now
	t.initSent = true
	t.retry = now.Add(t.p.RekeyTimeout + t.jitter())
	t.AuthenticatedSent(now)
}

// HandshakeCompleted: a session was established. Call it as initiator when the
// response arrives, and as responder when Keypairs.Received promotes the new
// keypair (not when sending the response: until the initiator confirms, our
// own retries must go on). Retries stop and the zero-keys timer starts over.
func (t *Timers) HandshakeCompleted(now time.Time) {
	t.handshaking = false
	t.retry = time.Time{}
	t.wantStart = time.Time{}
	t.attempts = 0
	t.newHandshake = time.Time{} // the handshake itself was an answer
	t.zeroKeys = now.Add(3 * t.p.RejectAfterTime)
}

// KeysDerived: a handshake we answered made keys that wait for the
// initiator's confirmation (the responder's next keypair). They live
// RejectAfterTime from now, so the zero-keys timer, which counts from the
// last completed handshake, must not fire before 3*RejectAfterTime from
// now: an old deadline would clear the session the initiator has just
// made current and is confirming.
func (t *Timers) KeysDerived(now time.Time) {
	if z := now.Add(3 * t.p.RejectAfterTime); z.After(t.zeroKeys) {
		t.zeroKeys = z
	}
}

// WantHandshake: something wants keys (rekey on send or receive, a queued
// packet). Idempotent while a handshake is pending. The initiation is due at
// once, or RekeyTimeout after the last one, whichever is later.
func (t *Timers) WantHandshake(now time.Time) {
	if t.handshaking {
		return
	}
	t.handshaking = true
	t.wantStart = now
	t.attempts = 0 // "no answer after N attempts" counts this handshake's
	t.retry = now
	if t.initSent {
		if earliest := t.lastInit.Add(t.p.RekeyTimeout); earliest.After(now) {
			t.retry = earliest
		}
	}
}

// Reset forgets what the peer's dropped sessions armed (Keypairs.Clear:
// a disconnect): the handshake under way, whose retries and give-up
// deadline would otherwise run on and give up on the next handshake within
// seconds of its start, the new-handshake and passive keepalive timers of
// traffic under the dropped keys, and the zero-keys timer. What wants keys
// next starts a handshake of its own. The rate limit of one initiation per
// RekeyTimeout holds across it, and the persistent keepalive (a NAT
// mapping, which has nothing to do with keys) goes on.
func (t *Timers) Reset() {
	t.handshaking = false
	t.wantStart, t.retry = time.Time{}, time.Time{}
	t.attempts = 0
	t.newHandshake = time.Time{}
	t.keepalive = time.Time{}
	t.zeroKeys = time.Time{}
}

// due reports whether the armed deadline d has come.
func due(d, now time.Time) bool { return !d.IsZero() && !now.Before(d) }

// Due returns the actions due at now and disarms (or re-arms) their timers.
// Call it at NextDeadline and after events; calling it early is harmless.
func (t *Timers) Due(now time.Time) Action {
	var a Action
	if due(t.newHandshake, now) {
		t.newHandshake = time.Time{}
		t.WantHandshake(now)
	}
	if t.handshaking && due(t.retry, now) {
		if now.Sub(t.wantStart) >= t.p.RekeyAttemptTime {
			a |= ActGiveUp
			t.handshaking = false
			t.retry = time.Time{}
			t.wantStart = time.Time{}
			if t.zeroKeys.IsZero() {
				t.zeroKeys = now.Add(3 * t.p.RejectAfterTime)
			}
		} else {
			a |= ActSendInitiation
			// Re-arm now, so a tunnel that cannot send (no endpoint) is asked
			// again after RekeyTimeout instead of on every call, and still
			// gives up on time. HandshakeInitiated re-arms it from the send.
			t.retry = now.Add(t.p.RekeyTimeout + t.jitter())
			if t.initSent {
				if earliest := t.lastInit.Add(t.p.RekeyTimeout); earliest.After(t.retry) {
					t.retry = earliest
				}
			}
		}
	}
	if due(t.keepalive, now) {
		t.keepalive = time.Time{}
		a |= ActSendKeepalive
	}
	if due(t.persistent, now) {
		t.persistent = now.Add(t.p.PersistentKeepalive)
		a |= ActSendKeepalive
	}
	if due(t.zeroKeys, now) {
		t.zeroKeys = time.Time{}
		a |= ActZeroKeys
	}
	return a
}

// NextDeadline returns the earliest armed deadline; the zero time means
// nothing is scheduled (sleep until an event).
func (t *Timers) NextDeadline() time.Time {
	var next time.Time
	consider := func(d time.Time) {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	consider(t.newHandshake)
	if t.handshaking {
		consider(t.retry)
	}
	consider(t.keepalive)
	consider(t.persistent)
	consider(t.zeroKeys)
	return next
}

// Attempts returns the initiations sent for the handshake under way (or the
// one last given up), for messages like "no answer after N tries".
func (t *Timers) Attempts() int { return t.attempts }

// Handshaking reports whether a handshake is wanted and not yet completed.
func (t *Timers) Handshaking() bool { return t.handshaking }
