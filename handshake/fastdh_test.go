package handshake

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/curve25519"
)

func TestFastKeygenMatchesX25519(t *testing.T) {
	k := make([]byte, 32)
	for i := 0; i < 2000; i++ {
		switch i {
		case 0: // all zero
		case 1:
			for j := range k {
				k[j] = 0xff
			}
		default:
			if _, err := rand.Read(k); err != nil {
				t.Fatal(err)
			}
		}
		want, err := curve25519.X25519(k, curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		got, err := x25519Base(k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("key %x: fast %x, X25519 %x (%v)", k, got, want, err)
		}
	}
}

func BenchmarkKeygen(b *testing.B) {
	k := make([]byte, 32)
	k[0] = 1
	b.Run("x25519", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			curve25519.X25519(k, curve25519.Basepoint)
		}
	})
	b.Run("edwards-fixed-base", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			x25519Base(k)
		}
	})
}
