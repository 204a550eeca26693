package replay

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// model is the plain reference: the set of counters seen and the highest one.
type model struct {
	seen          map[uint64]bool
	high          uint64
	window, limit uint64
}

func newModel(window, limit uint64) *model {
	return &model{seen: map[uint64]bool{}, window: window, limit: limit}
}

func (m *model) accept(c uint64) bool {
	if c >= m.limit || m.seen[c] {
		return false
	}
	if c < m.high && m.high-c >= m.window {
		return false
	}
	m.seen[c] = true
	m.high = max(m.high, c)
	return true
}

// prune drops counters that can never matter again (below the window), so
// long runs keep the map small. It does not change any decision.
func (m *model) prune() {
	for c := range m.seen {
		if c < m.high && m.high-c >= m.window {
			delete(m.seen, c)
		}
	}
}

// stream yields counters like a network would: mostly the next one, some
// reordered back within (and a little beyond) the window, duplicates of recent
// ones, and rare jumps far ahead, some beyond the whole ring.
type stream struct {
	r      *rand.Rand
	next   uint64
	recent [64]uint64
	n      int
	window uint64
}

func (s *stream) counter() uint64 {
	var c uint64
	switch p := s.r.IntN(1000); {
	case p < 700:
		c = s.next
		s.next++
	case p < 900: // reordered: up to 1.5 windows back
		back := s.r.Uint64N(s.window + s.window/2)
		if back > s.next {
			back = s.next
		}
		c = s.next - back
	case p < 990: // duplicate of a recent counter
		c = s.recent[s.r.IntN(len(s.recent))]
	case p < 998: // jump ahead within a few rings
		s.next += s.r.Uint64N(8 * s.window)
		c = s.next
	default: // jump far ahead
		s.next += s.r.Uint64N(1 << 40)
		c = s.next
	}
	s.recent[s.n%len(s.recent)] = c
	s.n++
	return c
}

func TestAgainstModel(t *testing.T) {
	ops := 1_000_000 // per config: 5M decisions in all
	if testing.Short() {
		ops = 200_000
	}
	configs := []struct{ window, limit uint64 }{
		{MinWindow, math.MaxUint64},
		{1024, math.MaxUint64},
		{DefaultWindow, math.MaxUint64},
		{MinWindow, 50_000}, // the limit is reached during the run
		{DefaultWindow, 1 << 20},
	}
	for i, cfg := range configs {
		f := mustNew(t, cfg.window, cfg.limit)
		m := newModel(cfg.window, cfg.limit)
		s := &stream{r: rand.New(rand.NewPCG(uint64(i), 0x5eed)), window: cfg.window}
		for op := 0; op < ops; op++ {
			c := s.counter()
			if got, want := f.Accept(c), m.accept(c); got != want {
				t.Fatalf("window %d limit %d op %d: Accept(%d) = %v, model says %v (highest %d)",
					cfg.window, cfg.limit, op, c, got, want, m.high)
			}
			if op%100_000 == 0 {
				m.prune()
			}
		}
	}
}

// FuzzAgainstModel decodes the input as a window choice followed by 3-byte
// operations (kind, delta) and checks every decision against the model.
func FuzzAgainstModel(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 0xff, 0xff, 1, 0x80, 0, 0, 1, 1, 3, 0, 0})
	f.Add([]byte{2, 4, 0, 0, 1, 0, 3, 0, 7, 0, 2, 0x10, 0x00})
	f.Add([]byte{3, 5, 0x12, 0x34, 0, 0, 0, 1, 0xff, 0, 4, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		window := uint64(MinWindow) << (data[0] & 3) // 128..1024
		limit := uint64(math.MaxUint64)
		if data[0]&4 != 0 {
			limit = 1 << 16
		}
		flt := mustNew(t, window, limit)
		m := newModel(window, limit)
		var cur uint64
		for ops := data[1:]; len(ops) >= 3; ops = ops[3:] {
			d := uint64(binary.BigEndian.Uint16(ops[1:3]))
			switch ops[0] % 6 {
			case 0: // forward by a little
				cur += d & 0xff
			case 1: // backward
				cur -= min(cur, d)
			case 2: // forward by a lot (past the ring)
				cur += d << 8
			case 3: // near the limit
				cur = limit - d%4 - 1
			case 4: // the top of the range
				cur = math.MaxUint64 - d
			case 5: // absolute small counter
				cur = d
			}
			if got, want := flt.Accept(cur), m.accept(cur); got != want {
				t.Fatalf("window %d limit %d: Accept(%d) = %v, model says %v (highest %d)",
					window, limit, cur, got, want, m.high)
			}
		}
	})
}
