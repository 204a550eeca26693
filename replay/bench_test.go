package replay

import (
	"math"
	"math/rand/v2"
	"testing"
)

func BenchmarkAcceptInOrder(b *testing.B) {
	f := mustNew(b, DefaultWindow, math.MaxUint64)
	b.ReportAllocs()
	var c uint64
	for b.Loop() {
		if !f.Accept(c) {
			b.Fatalf("Accept(%d) refused", c)
		}
		c++
	}
}

// BenchmarkAcceptReordered feeds a stream where each block of 64 counters
// arrives shuffled, as with parallel crypto or multipath links.
func BenchmarkAcceptReordered(b *testing.B) {
	const n = 1 << 16
	order := make([]uint64, n)
	for i := range order {
		order[i] = uint64(i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i += 64 {
		blk := order[i : i+64]
		r.Shuffle(len(blk), func(a, b int) { blk[a], blk[b] = blk[b], blk[a] })
	}
	f := mustNew(b, DefaultWindow, math.MaxUint64)
	b.ReportAllocs()
	var base uint64
	i := 0
	for b.Loop() {
		if !f.Accept(base + order[i]) {
			b.Fatalf("Accept(%d) refused", base+order[i])
		}
		i++
		if i == n {
			i = 0
			base += n
		}
	}
}

func BenchmarkAcceptDuplicate(b *testing.B) {
	f := mustNew(b, DefaultWindow, math.MaxUint64)
	f.Accept(1000)
	b.ReportAllocs()
	for b.Loop() {
		if f.Accept(1000) {
			b.Fatal("duplicate accepted")
		}
	}
}
