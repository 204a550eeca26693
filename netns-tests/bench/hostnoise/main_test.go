package main

import (
	"testing"
	"time"
)

// A scripted clock: 1 us steps, with a 0.5 ms and a 3 ms gap, and a 150 us
// one that is too short to count.
func TestWatchCountsOnlyGapsOfAtLeastMin(t *testing.T) {
	base := time.Unix(1000, 0)
	steps := []time.Duration{0, 1, 2, 502, 503, 3503, 3504, 3654, 3655, 10000} // microseconds
	i := 0
	clock := func() time.Time {
		s := steps[min(i, len(steps)-1)]
		i++
		return base.Add(s * time.Microsecond)
	}
	r := watch(0, 10*time.Millisecond, 200*time.Microsecond, clock)
	if r.err != nil {
		t.Fatal(r.err)
	}
	// 3655 -> 10000 is a gap too: the last reading ends the run after it.
	if r.stalls != 3 || r.lost != (500+3000+6345)*time.Microsecond || r.max != 6345*time.Microsecond || r.ran != 10*time.Millisecond {
		t.Errorf("got %d stalls, %v lost, longest %v, ran %v; want 3, 9.845ms, 6.345ms, 10ms", r.stalls, r.lost, r.max, r.ran)
	}
}
