package tunnel

import (
	"testing"

	"stunnel/handshake"
	"stunnel/internal/secretprint"
)

// TestPeerNeverPrintsKeys: a Peer prints its ID, never the pre-shared key
// of its unexported configuration, which fmt printed byte by byte (it
// cannot call the key's own Format in an unexported field).
func TestPeerNeverPrintsKeys(t *testing.T) {
	raw := secretprint.Secret(handshake.KeySize)
	p := newPair(t, withPSK(handshake.PresharedKey(raw)))
	beta := p.a.dev.peers.Load().byID["beta"]
	secretprint.Check(t, "*Peer", beta, raw, `"beta"`)
}
