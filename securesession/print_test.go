package securesession

import (
	"testing"

	"stunnel/handshake"
	"stunnel/internal/secretprint"
)

// TestSessionNeverPrintsKeys: a Session prints a placeholder, never the
// private key its unexported Config holds (fmt printed that field byte by
// byte: it cannot call the key's own Format there), nor the pre-shared key.
func TestSessionNeverPrintsKeys(t *testing.T) {
	raw := secretprint.Secret(handshake.KeySize)
	priv := handshake.PrivateKey(raw)
	s, err := New(Config{PeerID: "alice", PrivateKey: priv, Peers: LookupFunc(func(string) (handshake.PeerInfo, error) {
		return handshake.PeerInfo{PublicKey: keys(t).PublicKey(), PresharedKey: handshake.PresharedKey(raw)}, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Connect("bob"); err != nil {
		t.Fatal(err)
	}
	secretprint.Check(t, "*Session", s, raw, "securesession.Session")
}
