package tunnel

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

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

// busyBind is a bind whose port is taken: Open fails, as when another
// process listens on listen_port.
type busyBind struct{ *memBind }

func (busyBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return nil, 0, errors.New("address already in use")
}

// New failing after it restored a saved state (here: the listen port is
// taken) leaves no restored session, ticket, PSK or private key behind:
// the daemon exits, but the process may live on (a library caller) and
// these must not outlive their use. Before the fix they stayed in the
// abandoned device.
func TestFailedStartZeroesRestoredKeys(t *testing.T) {
	psk := testPSK(t)
	p := newPair(t, withPSK(psk))
	p.exchange(t, 1)
	state, err := p.b.dev.CloseAndSave()
	if err != nil || len(state) == 0 {
		t.Fatalf("no state saved: %v", err)
	}

	bind := busyBind{p.net.bind(p.b.under)}
	d, err := start(p.b.cfg, Options{TUN: newMemTUN(), Bind: bind, Now: p.clock.Now, TickInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RestoreState: state})
	if err == nil || d == nil {
		t.Fatalf("start on a taken port: device %v, err %v; want the zeroed device and an error", d, err)
	}
	if d.Restored().Sessions != 1 {
		t.Fatalf("restored %+v, want the session back before the failure", d.Restored())
	}
	peer := d.peers.Load().list[0]
	if n := len(keypairsOf(peer)); n != 0 {
		t.Errorf("%d restored keypairs outlived the failed start", n)
	}
	if !peer.sess.PresharedKey().IsZero() || !peer.cfg.PresharedKey.IsZero() {
		t.Error("the PSK outlived the failed start")
	}
	if !d.host.Config().PrivateKey.IsZero() {
		t.Error("the private key outlived the failed start")
	}
	d.indices.mu.RLock()
	n := len(d.indices.m)
	d.indices.mu.RUnlock()
	if n != 0 {
		t.Errorf("%d index entries outlived the failed start", n)
	}
	if _, err := New(p.b.cfg, Options{TUN: newMemTUN(), Bind: bind, Now: p.clock.Now, TickInterval: -1}); err == nil {
		t.Fatal("New on a taken port succeeded")
	}
}
