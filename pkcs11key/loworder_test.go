package pkcs11key

import (
	"testing"

	"stunnel/handshake"
)

// FuzzLowOrder: the blocklist says "low order" exactly when X25519 with a
// (clamped, fixed) private key gives all zeros.
func FuzzLowOrder(f *testing.F) {
	for _, p := range lowOrderPoints {
		f.Add(p[:])
	}
	f.Add(make([]byte, 31))
	key := handshake.MemoryKey(handshake.PrivateKey{0x48, 31: 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 32 {
			return
		}
		pub := handshake.PublicKey(b)
		ss, err := key.SharedSecret(pub)
		if err != nil {
			t.Fatal(err)
		}
		if zero := ss == [32]byte{}; zero != isLowOrder(pub) {
			t.Fatalf("%x: X25519 all zeros %v, isLowOrder %v", b, zero, !zero)
		}
	})
}
