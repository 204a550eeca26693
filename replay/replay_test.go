package replay

import (
	"math"
	"testing"
)

type step struct {
	c    uint64
	want bool
}

func run(t *testing.T, f *Filter, steps []step) {
	t.Helper()
	for i, s := range steps {
		if got := f.Accept(s.c); got != s.want {
			t.Fatalf("step %d: Accept(%d) = %v, want %v", i, s.c, got, s.want)
		}
	}
}

func mustNew(t testing.TB, window, limit uint64) *Filter {
	t.Helper()
	f, err := New(window, limit)
	if err != nil {
		t.Fatalf("New(%d, %d): %v", window, limit, err)
	}
	return f
}

func TestNewRejectsBadParameters(t *testing.T) {
	for _, w := range []uint64{0, 1, 2, 64, 127, 129, 192, 3000, 8191, MaxWindow * 2, 1 << 63} {
		if f, err := New(w, math.MaxUint64); err == nil {
			t.Errorf("New(%d) = %v, want an error", w, f)
		}
	}
	if _, err := New(DefaultWindow, 0); err == nil {
		t.Error("New with limit 0 succeeded, want an error")
	}
	for _, w := range []uint64{MinWindow, 256, 1024, DefaultWindow, MaxWindow} {
		f := mustNew(t, w, math.MaxUint64)
		if f.Window() != w {
			t.Errorf("Window() = %d, want %d", f.Window(), w)
		}
	}
}

func TestTable(t *testing.T) {
	const W = 128
	ring := uint64(2 * W) // counters the ring's bits cover
	tests := []struct {
		name  string
		limit uint64
		steps []step
	}{
		{"in order", math.MaxUint64, []step{{0, true}, {1, true}, {2, true}, {3, true}, {64, true}, {65, true}, {1000, true}, {1001, true}}},
		{"counter 0 once", math.MaxUint64, []step{{0, true}, {0, false}, {1, true}, {0, false}}},
		{"counter 0 after the window passed it", math.MaxUint64, []step{{W, true}, {0, false}}},
		{"counter 0 still inside the window", math.MaxUint64, []step{{W - 1, true}, {0, true}, {0, false}}},
		{"out of order within the window", math.MaxUint64, []step{
			{10, true}, {5, true}, {7, true}, {6, true}, {9, true}, {8, true}, {200, true}, {100, true}, {199, true}, {73, true},
		}},
		{"duplicates", math.MaxUint64, []step{
			{1, true}, {1, false}, {2, true}, {1, false}, {2, false}, {500, true}, {500, false}, {450, true}, {450, false},
		}},
		{"edge of the window", math.MaxUint64, []step{
			{1000, true}, {1000 - W + 1, true}, {1000 - W, false}, {1000 - W + 1, false}, {999, true},
		}},
		{"edge after the window slides by one", math.MaxUint64, []step{
			{1000, true}, {1001, true}, {1001 - W, false}, {1001 - W + 1, true},
		}},
		{"jump larger than the whole ring", math.MaxUint64, []step{
			// Mark counters whose bits alias the ones near the new highest,
			// then jump: the cleared ring must accept every aliased counter.
			{0, true}, {1, true}, {2, true}, {ring - 1, true}, {ring, true},
			{5*ring + 2, true}, {5*ring + 1, true}, {5 * ring, true}, {5*ring - 1, true},
			{5*ring + 2 - W + 1, true}, {5*ring + 2 - W, false}, {ring, false}, {2, false},
		}},
		{"jump of exactly one ring", math.MaxUint64, []step{
			{3, true}, {3 + ring, true}, {3, false}, {3 + ring - 1, true}, {3 + ring - W + 1, true}, {3 + ring - W, false},
		}},
		{"jump of exactly one window", math.MaxUint64, []step{
			{3, true}, {3 + W, true}, {3, false}, {4, true}, {4, false},
		}},
		{"at, under and over the limit", 1000, []step{
			{998, true}, {999, true}, {1000, false}, {1001, false}, {math.MaxUint64, false}, {997, true}, {999, false},
		}},
		{"refused counters over the limit do not move the window", 1000, []step{
			{10, true}, {5000, false}, {11, true}, {9, true},
		}},
		{"limit at the top of the range", math.MaxUint64, []step{
			{math.MaxUint64 - 1, true}, {math.MaxUint64, false}, {math.MaxUint64 - 1, false}, {math.MaxUint64 - W, true}, {math.MaxUint64 - W - 1, false},
		}},
		{"limit 1 admits only counter 0", 1, []step{{1, false}, {0, true}, {0, false}, {1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, mustNew(t, W, tt.limit), tt.steps)
		})
	}
}

// TestWindowIsExact checks, for every position of the highest counter within
// its ring word, that exactly W counters below and including it are inside
// the window.
func TestWindowIsExact(t *testing.T) {
	for _, w := range []uint64{MinWindow, 256, 1024} {
		for base := uint64(0); base < 3; base++ {
			for r := uint64(0); r < 64; r++ {
				h := (base+w/64+2)*64 + r
				f := mustNew(t, w, math.MaxUint64)
				if !f.Accept(h) {
					t.Fatalf("W=%d: Accept(%d) on a fresh filter refused", w, h)
				}
				if f.Accept(h - w) {
					t.Fatalf("W=%d H=%d: counter H-W accepted", w, h)
				}
				for c := h - w + 1; c < h; c++ {
					if !f.Accept(c) {
						t.Fatalf("W=%d H=%d: counter %d (H-%d) refused", w, h, c, h-c)
					}
				}
				for c := h - w; c <= h; c++ {
					if f.Accept(c) {
						t.Fatalf("W=%d H=%d: counter %d accepted twice", w, h, c)
					}
				}
			}
		}
	}
}

// TestBulk runs whole windows forward and backward across the edge, after the
// kernel's bulk tests.
func TestBulk(t *testing.T) {
	const W = DefaultWindow
	f := mustNew(t, W, math.MaxUint64)
	for c := uint64(1); c <= W; c++ {
		if !f.Accept(c) {
			t.Fatalf("forward: Accept(%d) refused", c)
		}
	}
	if f.Accept(0) { // H = W, so 0 is exactly H-W: just outside
		t.Fatal("forward: counter 0 accepted though it is W below the highest")
	}
	f.Reset()
	for c := uint64(W + 1); c >= 2; c-- {
		if !f.Accept(c) {
			t.Fatalf("backward: Accept(%d) refused", c)
		}
	}
	if f.Accept(1) {
		t.Fatal("backward: counter 1 accepted though it is W below the highest")
	}
	f.Reset()
	for c := uint64(2 * W); c >= 1; c-- {
		want := c > W
		if got := f.Accept(c); got != want {
			t.Fatalf("backward past the edge: Accept(%d) = %v, want %v", c, got, want)
		}
	}
}

func TestReset(t *testing.T) {
	f := mustNew(t, MinWindow, 100)
	run(t, f, []step{{0, true}, {50, true}, {99, true}, {100, false}})
	f.Reset()
	run(t, f, []step{{0, true}, {50, true}, {99, true}, {100, false}, {0, false}})
}

func TestAcceptDoesNotAllocate(t *testing.T) {
	f := mustNew(t, DefaultWindow, math.MaxUint64)
	var c uint64
	if n := testing.AllocsPerRun(10000, func() { c += 3; f.Accept(c); f.Accept(c - 1) }); n != 0 {
		t.Fatalf("Accept allocates %v times per run, want 0", n)
	}
}
