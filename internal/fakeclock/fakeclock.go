// Package fakeclock is the clock tests inject where the code takes a
// `func() time.Time`: it moves only when the test says, so timers, key
// lifetimes and rate limits are tested without sleeping.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is safe for concurrent use: the code under test reads it from its
// own goroutines while the test advances it.
type Clock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

// New returns a clock stopped at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's current time; pass c.Now as the injected clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
