package tunnel

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Logs and status that traffic from strangers can touch. Both structures
// here are fixed arrays indexed by a keyed hash (a random seed per device,
// so nobody can aim at a bucket): no key an attacker sends makes them grow,
// and nothing an attacker sends clears them. Issue 12, finding 5: the old
// limiter was a map keyed by the claimed peer ID and cleared wholesale at
// 1024 keys, so rotating IDs reset it.

// warnBuckets is the number of rate-limit buckets: at most this many warn
// lines per interval, whatever arrives.
const warnBuckets = 256

// rateLimitedLog logs an event at most once per interval per bucket, with
// the number of events it swallowed, so a flood of bad packets cannot flood
// the journal. Events from the network are keyed by source and reason
// (warnFrom); local events by a fixed key (warn). Two keys may share a
// bucket and then share its limit: the suppressed count says so. Safe for
// concurrent use.
type rateLimitedLog struct {
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	seed     maphash.Seed // immutable

	mu      sync.Mutex
	buckets [warnBuckets]warnBucket // guarded by mu
}

type warnBucket struct {
	last    time.Time // zero: never logged
	skipped int
}

func newRateLimitedLog(log *slog.Logger, now func() time.Time) *rateLimitedLog {
	return &rateLimitedLog{log: log, now: now, interval: 10 * time.Second, seed: maphash.MakeSeed()}
}

// warn logs under a key made by our own code (a reason, maybe with one of
// our peer IDs).
func (r *rateLimitedLog) warn(key, msg string, args ...any) {
	r.emit(r.keyHash(key), msg, args)
}

// warnFrom logs an event caused by a datagram from src, keyed by the
// source (IPv6 by its /64, the block one host usually controls, as the
// handshake rate limiter) and the reason.
func (r *rateLimitedLog) warnFrom(src netip.Addr, reason, msg string, args ...any) {
	r.emit(r.sourceHash(src, reason), msg, args)
}

// keyHash and sourceHash pick the bucket (h % warnBuckets) of warn and
// warnFrom: keyed, so a stranger cannot aim at another key's bucket, but two
// keys do share one now and then, and the later is then suppressed with it.
func (r *rateLimitedLog) keyHash(key string) uint64 { return maphash.String(r.seed, key) }

func (r *rateLimitedLog) sourceHash(src netip.Addr, reason string) uint64 {
	return hashSource(r.seed, src, reason)
}

// hashSource is the keyed hash of a source (sourceKey) and a reason, shared
// by the warn limiter and the refusal list.
func hashSource(seed maphash.Seed, src netip.Addr, reason string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	b := sourceKey(src).As16()
	h.Write(b[:])
	h.WriteString(reason)
	return h.Sum64()
}

// sourceKey is the address a source is limited by.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.WithZone("")
	if a.Is6() && !a.Is4In6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a.Unmap() // only to name the same host the same way in both families
}

func (r *rateLimitedLog) emit(h uint64, msg string, args []any) {
	now := r.now()
	r.mu.Lock()
	b := &r.buckets[h%warnBuckets]
	if !b.last.IsZero() && now.Sub(b.last) < r.interval && now.Sub(b.last) >= 0 {
		b.skipped++
		r.mu.Unlock()
		return
	}
	skipped := b.skipped
	b.last, b.skipped = now, 0
	r.mu.Unlock()
	if skipped > 0 {
		args = append(args, "similar_suppressed", skipped)
	}
	r.log.Warn(msg, args...)
}

// maxRefusals is the number of refusal slots shown by `stunnel show`.
const maxRefusals = 32

// refusalLog remembers the handshakes we refused, for `stunnel show`. It is
// maxRefusals slots indexed by a keyed hash of the source (as warnFrom) and
// the reason: a stranger rotating claimed peer IDs or reasons from one
// address keeps overwriting its own few slots and cannot push out what
// other sources caused; the claimed ID shown is the latest from that source.
type refusalLog struct {
	mu      sync.Mutex
	seeded  bool                 // guarded by mu
	seed    maphash.Seed         // guarded by mu; made on first use
	entries [maxRefusals]Refusal // guarded by mu; Count 0: empty
}

func (r *refusalLog) record(peerID, reason, endpoint string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &r.entries[r.slotLocked(reason, endpoint)]
	if e.Count > 0 && e.Reason == reason && e.PeerID == peerID {
		e.Count++
	} else {
		*e = Refusal{PeerID: peerID, Reason: reason, Count: 1}
	}
	e.Endpoint, e.Last = endpoint, now
}

// slotLocked is the slot of a source and reason. Two sources share a slot
// now and then (the later then replaces the earlier); the key is secret, so
// a stranger cannot aim at another source's slot. The caller holds mu.
func (r *refusalLog) slotLocked(reason, endpoint string) int {
	if !r.seeded {
		r.seed, r.seeded = maphash.MakeSeed(), true
	}
	if ap, err := netip.ParseAddrPort(endpoint); err == nil {
		return int(hashSource(r.seed, ap.Addr(), reason) % maxRefusals)
	}
	var h maphash.Hash // not an address (a test's or a future transport's name)
	h.SetSeed(r.seed)
	h.WriteString(endpoint)
	h.WriteString(reason)
	return int(h.Sum64() % maxRefusals)
}

// snapshot returns the refusals, newest first.
func (r *refusalLog) snapshot() []Refusal {
	r.mu.Lock()
	out := make([]Refusal, 0, maxRefusals)
	for _, e := range r.entries {
		if e.Count > 0 {
			out = append(out, e)
		}
	}
	r.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Refusal) int { return b.Last.Compare(a.Last) })
	return out
}
