package session

import (
	"testing"

	"stunnel/handshake"
)

// HasKeys, a reload's test of whether a peer keeps its session: the same
// static key and pre-shared key (none included), and nothing else.
func TestHasKeys(t *testing.T) {
	now := t0
	a, _ := newSides(t, &now)
	pub := a.host.PublicKey()
	other, _ := handshake.GeneratePrivateKey(nil)
	psk := handshake.PresharedKey{1, 2, 3}
	for _, c := range []struct {
		made, asked handshake.PresharedKey
		pub         handshake.PublicKey
		want        bool
	}{
		{psk, psk, pub, true},
		{handshake.PresharedKey{}, handshake.PresharedKey{}, pub, true},
		{psk, handshake.PresharedKey{1, 2, 4}, pub, false},
		{psk, handshake.PresharedKey{}, pub, false},
		{handshake.PresharedKey{}, psk, pub, false},
		{psk, psk, other.PublicKey(), false},
	} {
		p := a.host.NewPeer(PeerConfig{ID: "b", PublicKey: pub, PresharedKey: c.made}, a.reg)
		if got := p.HasKeys(c.pub, &c.asked); got != c.want {
			t.Errorf("made with PSK %v, asked about %v (same public key %v): HasKeys %v, want %v",
				c.made[:3], c.asked[:3], c.pub == pub, got, c.want)
		}
	}
}
