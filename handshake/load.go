package handshake

import (
	"sync"
	"time"
)

// LoadMonitor decides when the responder is "under load" and must demand
// cookies: while the tunnel's count of pending handshakes is at or above the
// threshold, and for LoadHoldTime after (so an attacker cannot toggle it off
// by pausing). A threshold of 0 or less means always under load. Safe for
// concurrent use.
type LoadMonitor struct {
	threshold int
	now       func() time.Time

	mu         sync.Mutex
	lastLoaded time.Time // guarded by mu: when pending last reached the threshold
}

// NewLoadMonitor makes a monitor; now may be nil (time.Now).
func NewLoadMonitor(threshold int, now func() time.Time) *LoadMonitor {
	if now == nil {
		now = time.Now
	}
	return &LoadMonitor{threshold: threshold, now: now}
}

// UnderLoad reports whether initiations must carry a valid mac2, given the
// number of handshakes waiting to be processed.
func (l *LoadMonitor) UnderLoad(pending int) bool {
	if l.threshold <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if pending >= l.threshold {
		l.lastLoaded = now
		return true
	}
	if l.lastLoaded.IsZero() {
		return false
	}
	d := now.Sub(l.lastLoaded)
	return d >= 0 && d < LoadHoldTime
}
