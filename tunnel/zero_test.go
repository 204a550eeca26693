package tunnel

import (
	"net/netip"
	"testing"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/rekey"
)

func withPSK(psk handshake.PresharedKey) func(a, b *conf.Config) {
	return func(a, b *conf.Config) {
		a.Peers[0].PresharedKey = psk
		b.Peers[0].PresharedKey = psk
	}
}

func testPSK(t *testing.T) handshake.PresharedKey {
	k := mustKey(t)
	return handshake.PresharedKey(k)
}

// keypairsOf returns the peer's live keypairs.
func keypairsOf(p *Peer) []*rekey.Keypair {
	var out []*rekey.Keypair
	prev, cur, next := p.sess.Slots()
	for _, k := range []*rekey.Keypair{prev, cur, next} {
		if k != nil {
			out = append(out, k)
		}
	}
	return out
}

// Issue 12, finding 6: a peer removed by a reload leaves no PSK and no
// session key behind in the Peer it was.
func TestReloadZeroesRemovedPeerSecrets(t *testing.T) {
	psk := testPSK(t)
	p := newPair(t, withPSK(psk))
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("x"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	beta := p.a.dev.peers.Load().byID["beta"]
	kps := keypairsOf(beta)
	if len(kps) == 0 || beta.sess.PresharedKey() != psk {
		t.Fatal("no session or PSK to begin with")
	}
	without := *p.a.cfg
	without.Peers = []conf.Peer{{ID: "gamma", PublicKey: mustKey(t).PublicKey(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.3/32")}}}
	if err := p.a.dev.Reload(&without); err != nil {
		t.Fatal(err)
	}
	if !beta.sess.PresharedKey().IsZero() || !beta.cfg.PresharedKey.IsZero() {
		t.Error("the removed peer's PSK is still in memory")
	}
	for _, kp := range kps {
		if !kp.IsZeroed() {
			t.Error("a session key of the removed peer was not zeroed")
		}
	}
	if len(keypairsOf(beta)) != 0 {
		t.Error("the removed peer still holds keypairs")
	}
	// A kept peer keeps its PSK.
	gamma := p.a.dev.peers.Load().byID["gamma"]
	if err := p.a.dev.Reload(&without); err != nil {
		t.Fatal(err)
	}
	if p.a.dev.peers.Load().byID["gamma"] != gamma {
		t.Fatal("an unchanged peer was replaced")
	}
}

// Close leaves no session key, PSK or private key in the device.
func TestCloseZeroesKeys(t *testing.T) {
	psk := testPSK(t)
	p := newPair(t, withPSK(psk))
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("x"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("y"))
	p.b.tun.toTunnel <- back
	p.a.expect(t, back)
	for _, h := range []*host{p.a, p.b} {
		d := h.dev
		peer := d.peers.Load().list[0]
		kps := keypairsOf(peer)
		if len(kps) == 0 {
			t.Fatalf("%s: no session to begin with", h.cfg.Interface.PeerID)
		}
		d.Close()
		for _, kp := range kps {
			if !kp.IsZeroed() {
				t.Errorf("%s: a session key outlived Close", h.cfg.Interface.PeerID)
			}
		}
		if !peer.sess.PresharedKey().IsZero() || !peer.cfg.PresharedKey.IsZero() {
			t.Errorf("%s: the PSK outlived Close", h.cfg.Interface.PeerID)
		}
		if !d.host.Config().PrivateKey.IsZero() {
			t.Errorf("%s: the private key outlived Close", h.cfg.Interface.PeerID)
		}
		d.indices.mu.RLock()
		n := len(d.indices.m)
		d.indices.mu.RUnlock()
		if n != 0 {
			t.Errorf("%s: %d index entries (keypairs, initiations) outlived Close", h.cfg.Interface.PeerID, n)
		}
	}
}
