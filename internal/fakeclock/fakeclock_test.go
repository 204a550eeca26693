package fakeclock

import (
	"testing"
	"time"
)

// A monotonic clock's wall steps move what is read through Unix time, not
// what is measured between two of its readings.
func TestStepWallMovesOnlyTheWallClock(t *testing.T) {
	c := NewMonotonic()
	a := c.Now()
	c.StepWall(-time.Hour)
	c.Advance(time.Second)
	b := c.Now()
	if got := b.Sub(a); got != time.Second {
		t.Fatalf("measured %v between readings a wall step apart; want the 1s advanced", got)
	}
	if got := time.Unix(0, b.UnixNano()).Sub(time.Unix(0, a.UnixNano())); got != time.Second-time.Hour {
		t.Fatalf("through Unix time: %v; want the step too", got)
	}
	if !b.After(a) || b.Before(a) {
		t.Fatal("comparisons do not follow the monotonic reading")
	}
}
