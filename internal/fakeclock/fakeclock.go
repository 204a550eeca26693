// Package fakeclock is the clock tests inject where the code takes a
// `func() time.Time`: it moves only when the test says, so timers, key
// lifetimes and rate limits are tested without sleeping.
package fakeclock

import (
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Clock is safe for concurrent use: the code under test reads it from its
// own goroutines while the test advances it.
type Clock struct {
	mu   sync.Mutex    // guards now and step
	now  time.Time     // with NewMonotonic: with a monotonic reading
	step time.Duration // the wall clock's steps so far (NewMonotonic only)
	mono bool          // made by NewMonotonic
}

// New returns a clock stopped at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// NewMonotonic returns a clock stopped at the real time.Now whose readings
// carry a monotonic reading beside the wall clock's, as time.Now's do:
// Advance moves both, StepWall only the wall clock (an NTP step, a VM
// resumed). Go compares and subtracts two such times on their monotonic
// readings, so code that keeps the clock's times as they come is not
// moved by StepWall; code that round-trips them through Unix seconds or
// nanoseconds (the wall clock) is, as it would be by a real step.
func NewMonotonic() *Clock { return &Clock{now: time.Now(), mono: true} }

// Now is the clock's current time; pass c.Now as the injected clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.step == 0 {
		return c.now
	}
	return stepWall(c.now, c.step)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// StepWall steps the wall clock by d (negative: back) and leaves the
// monotonic reading where it is. Only for a clock made by NewMonotonic:
// the others have no reading but the wall clock.
func (c *Clock) StepWall(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mono {
		panic("fakeclock: StepWall needs a clock made by NewMonotonic")
	}
	c.step += d
}

// timeLayout is time.Time's layout (wall, ext, loc): with a monotonic
// reading, ext holds it. The standard library has no way to make a time
// whose wall clock and monotonic reading disagree, which is exactly what
// time.Now returns after the wall clock stepped; stepWall makes one and
// checks through the public API that it did (a change of the layout fails
// loudly rather than testing nothing).
type timeLayout struct {
	wall uint64
	ext  int64
	loc  *time.Location
}

// stepWall returns t with its wall clock moved by d and its monotonic
// reading kept.
func stepWall(t time.Time, d time.Duration) time.Time {
	if unsafe.Sizeof(t) != unsafe.Sizeof(timeLayout{}) || !strings.Contains(t.String(), " m=") {
		panic("fakeclock: time.Time is not laid out as StepWall assumes, or t has no monotonic reading")
	}
	u := t.Add(d) // moves both readings
	(*timeLayout)(unsafe.Pointer(&u)).ext = (*timeLayout)(unsafe.Pointer(&t)).ext
	if u.Sub(t) != 0 || u.Round(0).Sub(t.Round(0)) != d {
		panic("fakeclock: time.Time is not laid out as StepWall assumes")
	}
	return u
}
