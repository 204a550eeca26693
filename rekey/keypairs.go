package rekey

import (
	"bytes"
	"sync"
	"time"
)

// Keypairs is the previous/current/next keypair slots of one peer.
//
// The initiator of a handshake sends under the new key as soon as it has the
// response (it knows the responder has the key too). The responder keeps the
// new key as next and sends under it only once a packet arrived under it, so
// it never sends under a key the initiator has not confirmed. Previous stays
// so packets still in flight under the old key keep opening until it expires.
//
// Safe for concurrent use: one RWMutex guards the three slots. Keypairs
// returned as dropped have already been zeroed; the caller removes their
// LocalIndex from its index table.
type Keypairs struct {
	mu       sync.RWMutex
	previous *Keypair // guarded by mu
	current  *Keypair // guarded by mu
	next     *Keypair // guarded by mu; responder-side keypair not yet confirmed
	// nextStale (guarded by mu): next is the peer's half of a crossing we
	// won (Install). It opens the packets the peer sends under it until it
	// switches to ours, but is never promoted: promoting it would make each
	// side send under the other's session, and neither would rekey on time.
	nextStale bool
}

// zeroAppend zeroes k (if any) and appends it to dropped.
func zeroAppend(dropped []*Keypair, k *Keypair) []*Keypair {
	if k == nil {
		return dropped
	}
	k.Zero()
	return append(dropped, k)
}

// Install puts the keypair of a completed handshake in its slot.
//
// Responder: kp becomes next (an older pending next is dropped); previous
// and current are untouched until Received promotes kp.
//
// Initiator: kp becomes current at once and the old current previous (the
// peer sends under it until it sees kp). With a responder-side next
// pending, both sides initiated at once and each answered the other
// (crossing initiations): both sessions are valid, and left alone each
// side would send under its own. Both sides would then hold a session they
// initiated, rekey on time at the same instant, and cross again at every
// rekey, each time dropping the key the peer was still sending under. So
// the two sessions are told apart as both sides see them, by session ID:
// the lower one wins. If kp is the higher, it is dropped (we yield) and
// next stays pending, to be promoted when the peer's first packet under it
// arrives; if kp wins, next is kept as stale (it opens, never promotes)
// for the peer that may already send under it. Either way one session is
// left, initiated by one side.
//
// It returns the keypairs it dropped, already zeroed; kp among them when
// we yielded (kp.IsZeroed() tells). Install counts any pending next as a
// crossing; InstallInitiated knows better.
func (s *Keypairs) Install(kp *Keypair) (dropped []*Keypair) {
	return s.InstallInitiated(kp, time.Time{})
}

// InstallInitiated is Install for our own keypair kp whose initiation was
// sent at sent. A next made before that is no crossing: we answered the
// peer's initiation before we sent ours, and the peer may have given up
// on it (it yielded in a crossing of its own) or may use it (it had our
// answer first). Neither side tie-breaks on it then, so we do not either:
// it becomes previous, kp current, and the old current is dropped (the
// peer moved to next before we initiated), which converges whichever the
// peer does.
func (s *Keypairs) InstallInitiated(kp *Keypair, sent time.Time) (dropped []*Keypair) {
	if kp == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !kp.Initiator {
		dropped = zeroAppend(dropped, s.next)
		s.next, s.nextStale = kp, false
		return dropped
	}
	if s.next != nil && !s.nextStale {
		if s.next.Created.Before(sent) {
			dropped = zeroAppend(dropped, s.previous)
			dropped = zeroAppend(dropped, s.current)
			s.previous, s.current, s.next = s.next, kp, nil
			return dropped
		}
		if bytes.Compare(kp.SessionID[:], s.next.SessionID[:]) > 0 {
			return zeroAppend(dropped, kp)
		}
		s.nextStale = true
	}
	dropped = zeroAppend(dropped, s.previous)
	s.previous = s.current
	s.current = kp
	return dropped
}

// Current returns the keypair to send with: nil if there is none, or it is
// expired at now, or its send counters are exhausted. A nil result means the
// packet waits in the Queue and a handshake is wanted.
func (s *Keypairs) Current(now time.Time) *Keypair {
	s.mu.RLock()
	c := s.current
	s.mu.RUnlock()
	if c == nil || c.Expired(now) || c.sendExhausted() {
		return nil
	}
	return c
}

// Received tells the slots that a packet authenticated under kp arrived. If kp
// is next (and not stale: Install), it is promoted (previous=current, current=kp, next=nil; the old
// previous is dropped) and promoted is true: the caller then flushes its
// pending queue and tells its Timers the handshake completed.
func (s *Keypairs) Received(kp *Keypair) (promoted bool, dropped []*Keypair) {
	s.mu.RLock()
	isNext := kp != nil && s.next == kp && !s.nextStale
	s.mu.RUnlock()
	if !isNext { // the common case: one read lock per packet
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next != kp || s.nextStale { // promoted, replaced or outvoted meanwhile
		return false, nil
	}
	dropped = zeroAppend(dropped, s.previous)
	s.previous = s.current
	s.current = kp
	s.next = nil
	return true, dropped
}

// NeedsRekeyOnReceive reports whether receiving should start a new
// handshake: the current keypair asks for it (Keypair.NeedsRekeyOnReceive).
// The current one decides, not the one a packet came under, as in
// wireguard-go (keepKeyFreshReceiving): a late packet under an old keypair
// we initiated must not start a handshake when the current key is fresh.
// Ask after Received, so a promoted next counts as current.
func (s *Keypairs) NeedsRekeyOnReceive(now time.Time) bool {
	s.mu.RLock()
	c := s.current
	s.mu.RUnlock()
	return c != nil && c.NeedsRekeyOnReceive(now)
}

// Expire zeroes every keypair that is expired at now (RejectAfterTime old), so
// raw keys do not outlive their use, and removes from its slot any keypair
// 3*RejectAfterTime old (as in WireGuard), so until then a late packet under
// it is counted as key_expired rather than unknown_index. Call it from the
// peer's timer tick. It returns the keypairs removed from the slots (all
// zeroed); the caller frees their indices.
func (s *Keypairs) Expire(now time.Time) (dropped []*Keypair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, slot := range []**Keypair{&s.previous, &s.current, &s.next} {
		k := *slot
		if k == nil || !k.Expired(now) {
			continue
		}
		k.Zero()
		if now.Sub(k.Created) >= 3*k.rejectAfterTime {
			dropped = append(dropped, k)
			*slot = nil
		}
	}
	return dropped
}

// Clear zeroes and removes every keypair (peer removed, ActZeroKeys, shutdown).
func (s *Keypairs) Clear() (dropped []*Keypair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped = zeroAppend(dropped, s.previous)
	dropped = zeroAppend(dropped, s.current)
	dropped = zeroAppend(dropped, s.next)
	s.previous, s.current, s.next, s.nextStale = nil, nil, nil, false
	return dropped
}

// Slots returns the three slots, for status and tests.
func (s *Keypairs) Slots() (previous, current, next *Keypair) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.previous, s.current, s.next
}
