package handshake

import (
	"net/netip"
	"sync"
	"time"
)

// RateLimiter is a token bucket per source: RateLimitPerSecond initiations a
// second with bursts of RateLimitBurst. IPv6 sources are grouped by /64, the
// smallest block one host usually controls. Memory is bounded: at most
// rateLimitMaxEntries sources are tracked; when the table is full, sources whose
// bucket has refilled are forgotten, and if none has, new sources are refused
// until one does (fail closed: this only runs under load). Safe for concurrent use.
type RateLimiter struct {
	now func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]bucket // guarded by mu
	lastSweep time.Time             // guarded by mu
}

type bucket struct {
	tokens int64     // nanoseconds of credit; one initiation costs tokenCost
	last   time.Time // when tokens was last brought up to date
}

const (
	tokenCost = int64(time.Second / RateLimitPerSecond)
	maxTokens = tokenCost * RateLimitBurst
)

// NewRateLimiter makes an empty limiter; now may be nil (time.Now).
func NewRateLimiter(now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{now: now, buckets: make(map[netip.Addr]bucket)}
}

// Allow takes one token from ip's bucket and reports whether there was one.
func (r *RateLimiter) Allow(ip netip.Addr) bool {
	key := ip.Unmap().WithZone("")
	if key.Is6() {
		key = netip.PrefixFrom(key, 64).Masked().Addr()
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= rateLimitMaxEntries && !r.sweepLocked(now) {
			return false
		}
		b = bucket{tokens: maxTokens, last: now}
	} else if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(maxTokens, b.tokens+int64(elapsed))
		b.last = now
	}
	allowed := b.tokens >= tokenCost
	if allowed {
		b.tokens -= tokenCost
	}
	r.buckets[key] = b
	return allowed
}

// sweepLocked forgets sources whose bucket is full again (forgetting them
// changes nothing), at most once a second, and reports whether there is room.
func (r *RateLimiter) sweepLocked(now time.Time) bool {
	if d := now.Sub(r.lastSweep); r.lastSweep.IsZero() || d >= time.Second || d < 0 {
		r.lastSweep = now
		for k, b := range r.buckets {
			if b.tokens+int64(now.Sub(b.last)) >= maxTokens {
				delete(r.buckets, k)
			}
		}
	}
	return len(r.buckets) < rateLimitMaxEntries
}

// Len is the number of sources tracked (for tests and status).
func (r *RateLimiter) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
