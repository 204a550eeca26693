package tundev

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if n%5 == 0 {
			for i := range b {
				b[i] = 0xff // worst case for carries
			}
		}
		start := r.Uint64()
		got := fold(checksum(b, start))
		want := uint16(refSum(b, uint32(fold(start))))
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d start %#x: checksum %#04x, reference %#04x", n, start, got, want)
		}
	}
}

// FuzzChecksumReference compares checksum and copyChecksum (the AVX2 path
// where the CPU has it, with its pure-Go tail) with the word-at-a-time
// reference, at any length, start sum and memory alignment (off shifts the
// data's address; every packet sum starts at an even offset of its header).
// 0 and 0xffff are the same ones-complement value.
func FuzzChecksumReference(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint8(1), uint64(0))
	f.Add(make([]byte, 161), uint8(3), ^uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, off uint8, start uint64) {
		o := int(off % 32)
		b := append(make([]byte, o), data...)[o:]
		want := uint16(refSum(b, uint32(fold(start))))
		same := func(got uint16) bool { return got == want || got^want == 0xffff && (got == 0 || want == 0) }
		if got := fold(checksum(b, start)); !same(got) {
			t.Fatalf("len %d at offset %d, start %#x: checksum %#04x, reference %#04x", len(b), o, start, got, want)
		}
		dst := make([]byte, o+len(b)+3)
		if got := fold(copyChecksum(dst[o:], b, start)); !same(got) || !bytes.Equal(dst[o:o+len(b)], b) {
			t.Fatalf("len %d at offset %d, start %#x: copyChecksum %#04x, reference %#04x", len(b), o, start, got, want)
		}
	})
}

func TestFold(t *testing.T) {
	for _, c := range []struct {
		in   uint64
		want uint16
	}{
		{0, 0}, {0xffff, 0xffff}, {0x10000, 1}, {0xffffffffffffffff, 0xffff},
		{0x0001000000000000, 1}, {0x1234_0000_0000_5678, 0x68ac},
	} {
		if got := fold(c.in); got != c.want {
			t.Errorf("fold(%#x) = %#x, want %#x", c.in, got, c.want)
		}
	}
}

func TestAddSumCarries(t *testing.T) {
	if got := fold(addSum(0xffffffffffffffff, 2)); got != fold(2) {
		t.Fatalf("addSum lost the end-around carry: %#x", got)
	}
}

func BenchmarkChecksum1400(b *testing.B) {
	buf := payload(1400, 3)
	b.SetBytes(int64(len(buf)))
	var s uint64
	for b.Loop() {
		s = checksum(buf, s)
	}
	_ = s
}
