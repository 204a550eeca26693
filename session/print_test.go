package session

import (
	"testing"

	"stunnel/handshake"
	"stunnel/internal/secretprint"
)

// TestPeerNeverPrintsKeys: a Peer prints its ID, never the pre-shared key
// of its unexported configuration nor a resumption secret, which fmt
// printed byte by byte.
func TestPeerNeverPrintsKeys(t *testing.T) {
	now := t0
	a, _ := newSides(t, &now)
	raw := secretprint.Secret(handshake.KeySize)
	p := a.host.NewPeer(PeerConfig{ID: "b", PublicKey: a.host.PublicKey(), PresharedKey: handshake.PresharedKey(raw)}, a.reg)
	copy(p.secret[:], raw)
	defer p.ZeroSecrets()
	defer p.Clear()
	secretprint.Check(t, "*Peer", p, raw, `"b"`)
}
