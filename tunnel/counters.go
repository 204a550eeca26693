package tunnel

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// dropReason indexes the per-peer and per-interface drop counters; the names
// are the keys of Status.Drops.
type dropReason uint8

const (
	dropNoRoute dropReason = iota
	dropNoKey
	dropAuthFailed
	dropReplayed
	dropSourceNotAllowed
	dropMalformed
	dropUnknownIndex
	dropQueueFull
	dropBadMAC1
	dropRateLimited
	dropHandshakeFailed
	dropNoEndpoint
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNoRoute, DropNoKey, DropAuthFailed, DropReplayed, DropSourceNotAllowed,
	DropMalformed, DropUnknownIndex, DropQueueFull, DropBadMAC1, DropRateLimited,
	DropHandshakeFailed, DropNoEndpoint,
}

// dropCounters are lock-free counters, one per reason.
type dropCounters [numDropReasons]atomic.Uint64

func (c *dropCounters) add(r dropReason, n uint64) { c[r].Add(n) }

func (c *dropCounters) snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range c {
		if v := c[i].Load(); v != 0 {
			m[dropNames[i]] = v
		}
	}
	return m
}

// rateLimitedLog logs an event at most once per interval per key, with the
// number of events it swallowed, so a flood of bad packets cannot flood the
// journal. Safe for concurrent use.
type rateLimitedLog struct {
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	skipped  map[string]int
}

func newRateLimitedLog(log *slog.Logger, now func() time.Time) *rateLimitedLog {
	return &rateLimitedLog{log: log, now: now, interval: 10 * time.Second,
		last: make(map[string]time.Time), skipped: make(map[string]int)}
}

func (r *rateLimitedLog) warn(key, msg string, args ...any) {
	now := r.now()
	r.mu.Lock()
	if t, ok := r.last[key]; ok && now.Sub(t) < r.interval {
		r.skipped[key]++
		r.mu.Unlock()
		return
	}
	if len(r.last) > 1024 { // keys include peer IDs claimed by strangers: bound the map
		clear(r.last)
		clear(r.skipped)
	}
	skipped := r.skipped[key]
	r.last[key] = now
	delete(r.skipped, key)
	r.mu.Unlock()
	if skipped > 0 {
		args = append(args, "similar_suppressed", skipped)
	}
	r.log.Warn(msg, args...)
}

// refusalLog remembers the handshakes we refused, by claimed peer ID, for
// `stunnel show`. Bounded: the oldest entry goes when it is full.
type refusalLog struct {
	mu      sync.Mutex
	entries []Refusal // newest first
}

const maxRefusals = 32

func (r *refusalLog) record(peerID, reason, endpoint string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.entries {
		if e.PeerID == peerID && e.Reason == reason {
			e.Count++
			e.Last = now
			e.Endpoint = endpoint
			copy(r.entries[1:i+1], r.entries[:i])
			r.entries[0] = e
			return
		}
	}
	if len(r.entries) == maxRefusals {
		r.entries = r.entries[:maxRefusals-1]
	}
	r.entries = append([]Refusal{{PeerID: peerID, Reason: reason, Endpoint: endpoint, Count: 1, Last: now}}, r.entries...)
}

func (r *refusalLog) snapshot() []Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Refusal{}, r.entries...)
}
