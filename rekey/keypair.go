package rekey

import (
	"crypto/cipher"
	"sync"
	"sync/atomic"
	"time"

	"stunnel/replay"
)

// Keypair is one session's data-plane keys and their bookkeeping: send nonces,
// the receive replay filter, expiry and zeroing. The caller (the tunnel) builds
// the AEADs from the handshake's keys; this package never sees a handshake.
//
// Concurrency: safe for concurrent use. The exported fields are immutable after
// NewKeypair. NextNonce is lock-free; CheckCounter and Zero take mu.
type Keypair struct {
	Send, Recv  cipher.AEAD // immutable after NewKeypair
	LocalIndex  uint32      // our receiver index (in packets sent to us)
	RemoteIndex uint32      // the peer's receiver index (we put it in packets we send)
	SessionID   [32]byte
	Created     time.Time
	Initiator   bool // we initiated the handshake that made it

	// Limits from the Policy as instants, so the hot path compares times
	// (cheaper than time.Sub) and reads no shared struct.
	rejectAt        time.Time // Created + RejectAfterTime
	rekeyAt         time.Time // Created + RekeyAfterTime
	recvRekeyAt     time.Time // Created + RejectAfterTime - KeepaliveTimeout - RekeyTimeout
	rejectAfterTime time.Duration
	rekeyAfterMsgs  uint64
	rejectAfterMsgs uint64
	sendCounter     atomic.Uint64 // next send nonce; never exceeds rejectAfterMsgs
	zeroed          atomic.Bool   // set first by Zero; the key never seals or opens again

	mu      sync.Mutex     // guards the fields below
	filter  *replay.Filter // receive counters accepted so far
	sendKey *[32]byte      // raw keys, owned by the Keypair once passed in; zeroed by Zero
	recvKey *[32]byte
}

// NewKeypair wraps a completed handshake's keys. sendKey and recvKey are the
// raw key arrays the AEADs were built from (may be nil); the Keypair takes
// ownership of them and zeroes them in Zero.
//
// p must have passed Validate. Should its replay window be invalid anyway,
// the filter falls back to replay.DefaultWindow rather than leaving the key
// without replay protection.
func NewKeypair(send, recv cipher.AEAD, sendKey, recvKey *[32]byte, local, remote uint32,
	sessionID [32]byte, created time.Time, initiator bool, p Policy) *Keypair {
	limit := max(p.RejectAfterMessages, 1)
	f, err := replay.New(p.ReplayWindow, limit)
	if err != nil {
		f, _ = replay.New(replay.DefaultWindow, limit) // cannot fail: both arguments valid
	}
	return &Keypair{
		Send:            send,
		Recv:            recv,
		LocalIndex:      local,
		RemoteIndex:     remote,
		SessionID:       sessionID,
		Created:         created,
		Initiator:       initiator,
		rejectAt:        created.Add(p.RejectAfterTime),
		rekeyAt:         created.Add(p.RekeyAfterTime),
		recvRekeyAt:     created.Add(p.RejectAfterTime - p.KeepaliveTimeout - p.RekeyTimeout),
		rejectAfterTime: p.RejectAfterTime,
		rekeyAfterMsgs:  p.RekeyAfterMessages,
		rejectAfterMsgs: limit,
		filter:          f,
		sendKey:         sendKey,
		recvKey:         recvKey,
	}
}

// NextNonce reserves the next send counter. ok is false once the counter has
// reached RejectAfterMessages, the keypair is RejectAfterTime old at now, or it
// was zeroed: the key must never seal again. Each n is returned at most once.
// Lock-free.
func (k *Keypair) NextNonce(now time.Time) (n uint64, ok bool) {
	if k.zeroed.Load() || !now.Before(k.rejectAt) {
		return 0, false
	}
	// Compare-and-swap rather than add: an add past the limit, repeated by
	// refused callers, would eventually wrap the counter and reuse a nonce.
	for {
		n = k.sendCounter.Load()
		if n >= k.rejectAfterMsgs {
			return 0, false
		}
		if k.sendCounter.CompareAndSwap(n, n+1) {
			return n, true
		}
	}
}

// NeedsRekeyOnSend reports whether sending under k should start a new
// handshake: RekeyAfterMessages have been sent (either side), or we initiated
// k and it is RekeyAfterTime old. Only the initiator rekeys on time, so the
// two sides do not start handshakes together.
func (k *Keypair) NeedsRekeyOnSend(now time.Time) bool {
	return k.sendCounter.Load() >= k.rekeyAfterMsgs ||
		(k.Initiator && !now.Before(k.rekeyAt))
}

// NeedsRekeyOnReceive reports whether receiving should start a new
// handshake while k is the current keypair (Keypairs.NeedsRekeyOnReceive
// asks the current one, whatever keypair a packet came under): we initiated
// k and it is RejectAfterTime - KeepaliveTimeout - RekeyTimeout old, so an
// initiator that only receives renews before its key dies (the responder
// cannot rekey on time).
func (k *Keypair) NeedsRekeyOnReceive(now time.Time) bool {
	return k.Initiator && !now.Before(k.recvRekeyAt)
}

// Verdict is what CheckCounter decided about an authenticated packet. The
// two refusals are told apart because they mean different things to an
// operator: a replay suggests someone resends captured traffic, an expired
// key only that a packet outlived its key (late, or sent across a rekey).
type Verdict uint8

const (
	Fresh      Verdict = iota // accepted: deliver it
	Replayed                  // counter already accepted, older than the window, or at RejectAfterMessages
	KeyExpired                // the key is RejectAfterTime old, zeroed or exported: a timer matter, not an attack
)

// CheckCounter marks counter as received and says whether it is fresh.
// Call it ONLY after k.Recv has authenticated the packet: a forged counter
// must never move the replay window.
func (k *Keypair) CheckCounter(counter uint64, now time.Time) Verdict {
	if k.zeroed.Load() || !now.Before(k.rejectAt) {
		return KeyExpired
	}
	k.mu.Lock()
	ok := k.filter.Accept(counter)
	// Zeroed while we waited for mu: Export froze the filter, which then
	// refuses every counter, so the refusal says the key is gone, not that
	// the counter was seen. (A replay racing a plain Zero is counted as
	// an expired key too: the key was retired at that instant either way.)
	retired := !ok && k.zeroed.Load()
	k.mu.Unlock()
	switch {
	case ok:
		return Fresh
	case retired:
		return KeyExpired
	}
	return Replayed
}

// Expired reports whether k may no longer seal or open at now: it is
// RejectAfterTime old or was zeroed. (A key whose send counter is exhausted can
// still open; Keypairs.Current skips it for sending.)
func (k *Keypair) Expired(now time.Time) bool {
	return k.zeroed.Load() || !now.Before(k.rejectAt)
}

// sendExhausted reports whether NextNonce would refuse for lack of counters.
func (k *Keypair) sendExhausted() bool {
	return k.sendCounter.Load() >= k.rejectAfterMsgs
}

// Zero makes k unusable (NextNonce and CheckCounter refuse from now on) and
// overwrites the raw keys it was given. Idempotent.
//
// The AEAD objects keep their own copies of the keys (crypto/cipher and
// x/crypto expose no way to wipe them); dropping every reference to k lets the
// collector reclaim them, which is the most Go allows.
func (k *Keypair) Zero() {
	k.zeroed.Store(true)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sendKey != nil {
		clear(k.sendKey[:])
	}
	if k.recvKey != nil {
		clear(k.recvKey[:])
	}
}

// RejectAt is when k stops sealing and opening (Expired from then on): its
// creation plus the RejectAfterTime of the policy it was made under, which
// a later policy (a reload) does not change.
func (k *Keypair) RejectAt() time.Time { return k.rejectAt }

// IsZeroed reports whether Zero has been called.
func (k *Keypair) IsZeroed() bool { return k.zeroed.Load() }
