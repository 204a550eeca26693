package tunnel

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"stunnel/conf"
)

func (p *Peer) handshaking() bool { return p.sess.Handshaking() }

// loudStart lets the pair's peers handshake at start, as the daemon does.
func loudStart(h *host, o *Options) { o.QuietStart = false }

// A site behind NAT (a: persistent_keepalive and an endpoint) handshakes as
// soon as it starts, so b, which has no endpoint for a, learns where a is
// and can send to it first, before a has any traffic of its own.
func TestPersistentKeepalivePeerHandshakesAtStart(t *testing.T) {
	p := newPairOpts(t, func(a, b *conf.Config) {
		a.Peers[0].PersistentKeepalive = 25 * time.Second
		b.Peers[0].Endpoint = "" // b cannot reach a until a has talked
	}, 0, nil, loudStart)
	p.retryUntil(t, "b to complete a handshake a started by itself", func() bool {
		st := p.b.peerStatus(t)
		return st.Handshakes > 0 && st.Endpoint != ""
	})
	pkt := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("from the open side"))
	p.b.tun.toTunnel <- pkt
	p.a.expect(t, pkt)
}

// Every peer with an endpoint handshakes at start, also without
// persistent_keepalive: after a crash the peer may still be sending under a
// session we lost, and would notice only after ~15 s of silence. A peer
// with no endpoint cannot be reached first and waits.
func TestHandshakeAtStartOnlyWithEndpoint(t *testing.T) {
	p := newPairOpts(t, func(a, b *conf.Config) {
		b.Peers[0].Endpoint = ""
	}, 0, nil, loudStart)
	p.retryUntil(t, "a's handshake at start, confirmed to b", func() bool { return p.b.peerStatus(t).Handshakes > 0 })
	if s := p.a.peerStatus(t); s.Handshakes != 1 || s.HandshakesResumed != 0 {
		t.Fatalf("a: %+v", s)
	}
	if p.b.dev.peers.Load().list[0].handshaking() {
		t.Error("b, with no endpoint for a, wants a handshake")
	}
}

// Once the session key is gone (a quiet spell longer than its lifetime), the
// persistent keepalive handshakes instead of falling silent, so the NAT
// mapping and b's path to a stay open.
func TestPersistentKeepaliveWithoutKeyHandshakes(t *testing.T) {
	p := newPairOpts(t, func(a, b *conf.Config) {
		a.Peers[0].PersistentKeepalive = 25 * time.Second
		b.Peers[0].Endpoint = ""
	}, 0, nil, loudStart)
	p.retryUntil(t, "the first handshake", func() bool { return p.b.peerStatus(t).Handshakes == 1 })
	pa := p.a.dev.peers.Load().list[0]
	pa.sess.Clear()
	p.clock.Advance(26 * time.Second)
	p.a.dev.tick()
	waitFor(t, 5*time.Second, "a second handshake started by the persistent keepalive", func() bool {
		return p.b.peerStatus(t).Handshakes == 2
	})
}

// retryUntil waits for cond while a's handshake retries run: a started
// before b's end of the in-memory network existed, so its first initiation
// may have gone nowhere, as with a real peer that starts later.
func (p *pair) retryUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		settle := time.Now().Add(200 * time.Millisecond)
		for !cond() && time.Now().Before(settle) {
			time.Sleep(2 * time.Millisecond)
		}
		if !cond() {
			p.clock.Advance(6 * time.Second) // past RekeyTimeout and its jitter
			p.a.dev.tick()
		}
	}
}

func TestListenErrorNamesBothFamiliesAndHints(t *testing.T) {
	err := listenError(51820, errors.New("udpbind: IPv4 socket on port 51820: bind: "+syscall.EADDRINUSE.Error()))
	if strings.Contains(err.Error(), "IPv6") {
		t.Fatalf("a plain error was dressed up as port-in-use: %v", err)
	}
	err = listenError(51820, &wrapped{syscall.EADDRINUSE})
	for _, want := range []string{"51820", "IPv6", "IPv4", "ss -uapn", "listen_port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("port-in-use error %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "\n") {
		t.Errorf("port-in-use error %q: not one line wrapping EADDRINUSE", err)
	}
}

func TestListenErrorNamesBindCapability(t *testing.T) {
	err := listenError(443, &wrapped{syscall.EACCES})
	for _, want := range []string{"443", "CAP_NET_BIND_SERVICE", "listen_port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("low-port error %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "\n") {
		t.Errorf("low-port error %q: not one line wrapping EACCES", err)
	}
	if err := listenError(51820, &wrapped{syscall.EACCES}); strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") {
		t.Errorf("a refused port above 1023 blamed on CAP_NET_BIND_SERVICE: %v", err)
	}
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "udpbind: IPv4 socket on port 51820: bind: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// A peer that a reload adds, with persistent_keepalive and an endpoint,
// handshakes at once too.
func TestPeerAddedByReloadHandshakes(t *testing.T) {
	var full []conf.Peer
	p := newPair(t, func(a, b *conf.Config) {
		full = a.Peers
		a.Peers = nil
		b.Peers[0].Endpoint = ""
	})
	next := *p.a.cfg
	next.Peers = append([]conf.Peer(nil), full...)
	next.Peers[0].PersistentKeepalive = 25 * time.Second
	if err := p.a.dev.Reload(&next); err != nil {
		t.Fatal(err)
	}
	p.retryUntil(t, "b to complete the handshake of the peer a's reload added", func() bool {
		return p.b.peerStatus(t).Handshakes > 0
	})
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A peer without an endpoint is named in the log once, at start, not on
// every timer tick; a peer with one is not.
func TestPeerWithoutEndpointLoggedOnce(t *testing.T) {
	ka, kb, kc := mustKey(t), mustKey(t), mustKey(t)
	cfg := &conf.Config{
		Path:      "a.toml",
		Interface: conf.Interface{Name: "sta", PeerID: "alpha", PrivateKey: ka, PublicKey: ka.PublicKey(), ListenPort: 51820, MTU: 1420},
		Peers: []conf.Peer{
			{ID: "roamer", PublicKey: kb.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32")}},
			{ID: "fixed", PublicKey: kc.PublicKey(), Endpoint: "198.18.0.3:51820", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.3/32")}},
		},
	}
	var logs lockedBuffer
	clock := newFakeClock()
	d, err := New(cfg, Options{TUN: newMemTUN(), Bind: newMemNet().bind("198.18.0.1:51820"), Now: clock.Now, TickInterval: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for range 5 {
		clock.Advance(10 * time.Second)
		d.tick()
	}
	out := logs.String()
	if n := strings.Count(out, "peer has no endpoint"); n != 1 || !strings.Contains(out, "peer=roamer") {
		t.Fatalf("logged \"peer has no endpoint\" %d times, want once for roamer:\n%s", n, out)
	}
	if strings.Contains(out, "no endpoint: it is reached only after it contacts us\" peer=fixed") {
		t.Fatalf("a peer with an endpoint was logged as having none:\n%s", out)
	}
}
