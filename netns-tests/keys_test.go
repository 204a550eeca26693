package netnstests

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// keyPair is an X25519 key pair in the base64 form of `stunnel genkey` and
// `stunnel pubkey`. Made here with x/crypto rather than the handshake
// package, so these tests check the key format from outside and do not need
// the packages they test to compile as a library.
type keyPair struct{ private, public string }

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	pub, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{base64.StdEncoding.EncodeToString(k[:]), base64.StdEncoding.EncodeToString(pub)}
}
