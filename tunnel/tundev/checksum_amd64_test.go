package tundev

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// goChecksum is checksum on the pure-Go path, the reference for the AVX2 one.
func goChecksum(b []byte, sum uint64) uint64 {
	saved := haveAVX2
	haveAVX2 = false
	defer func() { haveAVX2 = saved }()
	return checksum(b, sum)
}

func checkAVX2Matches(t *testing.T, b []byte, start uint64) {
	t.Helper()
	want := fold(goChecksum(b, start))
	if got := fold(checksum(b, start)); got != want {
		t.Fatalf("len %d start %#x: AVX2 checksum %#04x, pure Go %#04x", len(b), start, got, want)
	}
	dst := make([]byte, len(b)+7)
	if got := fold(copyChecksum(dst, b, start)); got != want {
		t.Fatalf("len %d start %#x: copyChecksum %#04x, pure Go %#04x", len(b), start, got, want)
	}
	if !bytes.Equal(dst[:len(b)], b) || !bytes.Equal(dst[len(b):], make([]byte, 7)) {
		t.Fatalf("len %d: copyChecksum copied wrong bytes or wrote past the source's length", len(b))
	}
}

// TestChecksumAVX2MatchesGo compares the two paths exactly (0 and 0xffff
// are not interchangeable here): every length around the AVX2 threshold and
// its 32-byte steps, all-ones and all-zero data (the carries' worst and
// the one case that folds to 0), and inputs longer than one AVX2 chunk.
func TestChecksumAVX2MatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no AVX2 on this CPU: checksum uses the pure-Go path only")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 700; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		checkAVX2Matches(t, b, 0)
		checkAVX2Matches(t, b, r.Uint64())
		checkAVX2Matches(t, bytes.Repeat([]byte{0xff}, n), r.Uint64())
		checkAVX2Matches(t, make([]byte, n), 0)
	}
	for _, n := range []int{maxAVX2Chunk - 32, maxAVX2Chunk, maxAVX2Chunk + 33, 3*maxAVX2Chunk + 1} {
		checkAVX2Matches(t, bytes.Repeat([]byte{0xff}, n), ^uint64(0))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		checkAVX2Matches(t, b, 1)
	}
}

func FuzzChecksumAVX2(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xff}, 200), uint64(0))
	f.Add(make([]byte, 129), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, start uint64) {
		if !haveAVX2 {
			t.Skip("no AVX2")
		}
		checkAVX2Matches(t, b, start)
	})
}
