package handshake

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// The vectors of RFC 7748, section 5.2 (non-canonical point and set top
// bit included), and the first iterations of its repeated test.
func TestX25519RFC7748(t *testing.T) {
	for _, v := range []struct{ scalar, point, out string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		s, _ := hex.DecodeString(v.scalar)
		p, _ := hex.DecodeString(v.point)
		var got [32]byte
		if err := x25519(&got, s, p); err != nil || hex.EncodeToString(got[:]) != v.out {
			t.Errorf("X25519(%s, %s) = %x, %v; want %s", v.scalar, v.point, got, err, v.out)
		}
	}
	k := make([]byte, 32)
	u := make([]byte, 32)
	k[0], u[0] = 9, 9
	for i := 0; i < 1000; i++ {
		var r [32]byte
		if err := x25519(&r, k, u); err != nil {
			t.Fatal(err)
		}
		copy(u, k)
		copy(k, r[:])
	}
	if want := "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"; hex.EncodeToString(k) != want {
		t.Fatalf("1000 iterations: %x, want %s", k, want)
	}
}

// TestX25519MatchesXCrypto compares with golang.org/x/crypto on random
// scalars and points, points with the top bit set, non-canonical points, and
// low-order points (both must refuse those).
func TestX25519MatchesXCrypto(t *testing.T) {
	lowOrder := []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	}
	s := make([]byte, 32)
	p := make([]byte, 32)
	for i := 0; i < 3000; i++ {
		if _, err := rand.Read(s); err != nil {
			t.Fatal(err)
		}
		switch {
		case i < len(lowOrder):
			p, _ = hex.DecodeString(lowOrder[i])
		case i%3 == 0: // a point of the curve, top bit set half the time
			pub, _ := curve25519.X25519(s, curve25519.Basepoint)
			copy(p, pub)
			p[31] |= byte(i%2) << 7
			if _, err := rand.Read(s); err != nil {
				t.Fatal(err)
			}
		case i%3 == 1: // non-canonical: 2^255 - 19 + small
			p, _ = hex.DecodeString("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
			p[0] += byte(i % 19)
		default: // random bytes (a point of the curve or of its twist)
			if _, err := rand.Read(p); err != nil {
				t.Fatal(err)
			}
		}
		want, werr := curve25519.X25519(s, p)
		var got [32]byte
		gerr := x25519(&got, s, p)
		if (werr != nil) != (gerr != nil) || werr == nil && !bytes.Equal(got[:], want) {
			t.Fatalf("scalar %x point %x: got %x (%v), x/crypto %x (%v)", s, p, got, gerr, want, werr)
		}
	}
	var out [32]byte
	if x25519(&out, s[:31], p) == nil || x25519(&out, s, p[:31]) == nil {
		t.Fatal("short inputs accepted")
	}
}

// BenchmarkX25519: one DH, ours against golang.org/x/crypto's.
func BenchmarkX25519(b *testing.B) {
	k := make([]byte, 32)
	k[0] = 1
	pub, _ := curve25519.X25519(k, curve25519.Basepoint)
	b.Run("ladder", func(b *testing.B) {
		var out [32]byte
		for i := 0; i < b.N; i++ {
			_ = x25519(&out, k, pub)
		}
	})
	b.Run("x-crypto", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_, _ = curve25519.X25519(k, pub)
		}
	})
}

// FuzzX25519: any scalar and point (a peer's key is untrusted bytes) give
// what golang.org/x/crypto gives, refusals included.
func FuzzX25519(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Add(bytes.Repeat([]byte{1}, 32), append([]byte{9}, make([]byte, 31)...))
	f.Fuzz(func(t *testing.T, s, p []byte) {
		// As given (wrong lengths are refused by both), and cut or padded
		// to 32 bytes, so that most inputs reach the ladder.
		var s32, p32 [32]byte
		copy(s32[:], s)
		copy(p32[:], p)
		for _, in := range [][2][]byte{{s, p}, {s32[:], p32[:]}} {
			var got [32]byte
			gerr := x25519(&got, in[0], in[1])
			want, werr := curve25519.X25519(in[0], in[1])
			if (werr != nil) != (gerr != nil) || werr == nil && !bytes.Equal(got[:], want) {
				t.Fatalf("scalar %x point %x: got %x (%v), x/crypto %x (%v)", in[0], in[1], got, gerr, want, werr)
			}
		}
	})
}
