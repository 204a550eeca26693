package rekey

import "testing"

// The per-packet calls of the data plane: figures, not assertions.

func BenchmarkNextNonce(b *testing.B) {
	k, _ := pair(b, DefaultPolicy(), t0, 1, 2)
	b.ReportAllocs()
	for b.Loop() {
		k.NextNonce(t0)
	}
}

func BenchmarkCheckCounter(b *testing.B) {
	_, r := pair(b, DefaultPolicy(), t0, 1, 2)
	b.ReportAllocs()
	var c uint64
	for b.Loop() {
		r.CheckCounter(c, t0)
		c++
	}
}

func BenchmarkCurrentAndReceived(b *testing.B) {
	var s Keypairs
	k, _ := pair(b, DefaultPolicy(), t0, 1, 2)
	s.Install(k)
	b.ReportAllocs()
	for b.Loop() {
		s.Received(s.Current(t0))
	}
}

func BenchmarkNextNonceParallel(b *testing.B) {
	k, _ := pair(b, DefaultPolicy(), t0, 1, 2)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k.NextNonce(t0)
		}
	})
}
