package tunnel

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/conf"
	"stunnel/handshake"
)

// newHub starts a device with n configured peers, each with a literal
// endpoint of its own (hubPeerAddr), quiet: no handshake, no timers.
func newHub(tb testing.TB, n int) *Device {
	tb.Helper()
	key := mustKey(tb)
	cfg := &conf.Config{
		Path:      "hub.toml",
		Interface: conf.Interface{Name: "sthub", PeerID: "hub", PrivateKey: key, PublicKey: key.PublicKey(), ListenPort: 51820, MTU: 1420},
	}
	for i := range n {
		pk := mustKey(tb).PublicKey()
		cfg.Peers = append(cfg.Peers, conf.Peer{ID: fmt.Sprintf("p%d", i), PublicKey: pk, Endpoint: hubPeerAddr(i).String(),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)}})
	}
	d, err := New(cfg, Options{TUN: newMemTUN(), Bind: newMemNet().bind("198.18.0.1:51820"), TickInterval: -1, QuietStart: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// hubPeerAddr is the endpoint of newHub's peer i.
func hubPeerAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 51820)
}

// junkCookieReply is a cookie reply anyone can send: right type and size,
// sealed to nothing.
func junkCookieReply() []byte {
	m := make([]byte, handshake.CookieReplySize)
	m[0], m[1] = handshake.MessageTypeCookieReply, handshake.ProtocolVersion
	m[4] = 0x5a
	return m
}

// BenchmarkJunkCookieReply is what a forged cookie reply costs the UDP
// reader of a hub with 10,000 configured peers: from an address no peer
// uses, and from the endpoint of a peer that waits for a cookie (it sent
// an initiation) with a reply that does not open.
func BenchmarkJunkCookieReply(b *testing.B) {
	const peers = 10000
	d := newHub(b, peers)
	waiting := d.peers.Load().list[peers/2]
	waiting.sendInitiation(d.now())
	for _, bc := range []struct {
		name string
		from netip.AddrPort
	}{
		{"stranger", netip.MustParseAddrPort("203.0.113.9:4444")},
		{"peer-endpoint", hubPeerAddr(peers / 2)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			msg := junkCookieReply()
			ep := conn.Endpoint(&conn.StdNetEndpoint{AddrPort: bc.from})
			before := d.drops[dropMalformed].Load()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				d.queueHandshake(msg, ep)
			}
			b.StopTimer()
			if got := d.drops[dropMalformed].Load() - before; got != uint64(b.N) {
				b.Fatalf("%d of %d junk cookie replies counted malformed", got, b.N)
			}
		})
	}
}

// initiations records the initiations b sends and drops everything b sends,
// so nothing answers: the test plays the responders with cookieFrom.
type initiations struct {
	mu   sync.Mutex
	last []byte
	to   netip.AddrPort
}

func recordInitiations(p *pair) *initiations {
	rec := &initiations{}
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if from.String() != p.b.under {
			return true
		}
		if b[0] == handshake.MessageTypeInitiation || b[0] == handshake.MessageTypeResumptionInitiation {
			rec.mu.Lock()
			rec.last, rec.to = append([]byte(nil), b...), to
			rec.mu.Unlock()
		}
		return false
	}
	return rec
}

// send makes peer q of b initiate and returns the initiation and where it went.
func (rec *initiations) send(t *testing.T, q *Peer) ([]byte, netip.AddrPort) {
	t.Helper()
	q.sendInitiation(q.d.now())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.last == nil {
		t.Fatalf("peer %s sent no initiation", q.id)
	}
	msg, to := rec.last, rec.to
	rec.last = nil
	return msg, to
}

// wait waits for b to initiate (on its own: a handshake worker) and
// returns the initiation and where it went.
func (rec *initiations) wait(t *testing.T) ([]byte, netip.AddrPort) {
	t.Helper()
	var msg []byte
	var to netip.AddrPort
	waitFor(t, 5*time.Second, "b to initiate", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		msg, to = rec.last, rec.to
		rec.last = nil
		return msg != nil
	})
	return msg, to
}

// cookieFrom is the cookie reply the responder with public key pub makes
// for init, which came from b.
func cookieFrom(t *testing.T, p *pair, pub handshake.PublicKey, init []byte) []byte {
	t.Helper()
	reply, err := handshake.NewCookieChecker(pub, p.clock.Now, nil).CreateReply(init, netip.MustParseAddrPort(p.b.under))
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// cookiesTaken is how many cookie replies b's peer id took.
func cookiesTaken(t *testing.T, d *Device, id string) uint64 {
	t.Helper()
	for _, s := range d.Status().Peers {
		if s.ID == id {
			return s.CookieReplies
		}
	}
	t.Fatalf("no peer %s", id)
	return 0
}

// listedAt is the IDs of the peers d's endpoint index lists under ap.
func listedAt(d *Device, ap netip.AddrPort) []string {
	d.endpoints.mu.RLock()
	defer d.endpoints.mu.RUnlock()
	var ids []string
	for q := d.endpoints.at[ap]; q != nil; q = q.atNext {
		ids = append(ids, q.id)
	}
	return ids
}

func indexSize(d *Device) int {
	d.endpoints.mu.RLock()
	defer d.endpoints.mu.RUnlock()
	n := 0
	for _, q := range d.endpoints.at {
		for ; q != nil; q = q.atNext {
			n++
		}
	}
	return n
}

// A cookie reply is taken from the peer's current endpoint only: for an
// initiation sent before the peer roamed, from the address it roamed to
// (the rule as it was when every peer's endpoint was compared); after it
// initiated from there, from the new address and not the old.
func TestCookieReplyFollowsRoamedEndpoint(t *testing.T) {
	// No configured endpoint: a retry would go back to it (reresolve).
	p := newPair(t, func(a, b *conf.Config) { b.Peers[0].Endpoint = "" })
	rec := recordInitiations(p)
	b := p.b.dev
	alpha := b.peers.Load().byID["alpha"]
	old := netip.MustParseAddrPort(p.a.under)
	moved := netip.MustParseAddrPort("198.18.0.77:40000")
	under := netip.MustParseAddrPort(p.b.under)
	aPub := p.a.key.PublicKey()

	alpha.roam(&conn.StdNetEndpoint{AddrPort: old})
	init, to := rec.send(t, alpha)
	if to != old {
		t.Fatalf("initiation went to %v, want %v", to, old)
	}
	alpha.roam(&conn.StdNetEndpoint{AddrPort: moved})
	p.net.inject(moved, under, cookieFrom(t, p, aPub, init))
	waitFor(t, 5*time.Second, "the cookie from the address roamed to", func() bool { return cookiesTaken(t, b, "alpha") == 1 })

	// Taking it, b initiated again at once, from the new address.
	init, to = rec.wait(t)
	if to != moved {
		t.Fatalf("initiation went to %v, want %v", to, moved)
	}
	malformed := b.drops[dropMalformed].Load()
	p.net.inject(old, under, cookieFrom(t, p, aPub, init))
	waitFor(t, 5*time.Second, "the cookie from the old address to be dropped", func() bool {
		return b.drops[dropMalformed].Load() == malformed+1
	})
	if n := cookiesTaken(t, b, "alpha"); n != 1 {
		t.Fatalf("took %d cookies, want 1: a reply from the address the peer left was taken", n)
	}
	p.net.inject(moved, under, cookieFrom(t, p, aPub, init))
	waitFor(t, 5*time.Second, "the cookie from the new address", func() bool { return cookiesTaken(t, b, "alpha") == 2 })
	if got := listedAt(b, old); got != nil {
		t.Fatalf("still listed under the address it left: %v", got)
	}
	if n := indexSize(b); n != 1 {
		t.Fatalf("%d entries in the endpoint index, want 1", n)
	}
}

// A peer that a reload removed takes no cookie reply any more, and the
// endpoint index keeps nothing of it, also when a lookup it started ends
// after the reload.
func TestCookieReplyNotTakenByRemovedPeer(t *testing.T) {
	p := newPair(t, nil)
	rec := recordInitiations(p)
	b := p.b.dev
	alpha := b.peers.Load().byID["alpha"]
	init, _ := rec.send(t, alpha)
	at := netip.MustParseAddrPort(p.a.under)

	// alpha is replaced by gamma (another key) at the same endpoint.
	gammaKey := mustKey(t)
	cfg := *p.b.cfg
	cfg.Peers = []conf.Peer{{ID: "gamma", PublicKey: gammaKey.PublicKey(), Endpoint: p.a.under}}
	if err := b.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if got := listedAt(b, at); !slices.Equal(got, []string{"gamma"}) {
		t.Fatalf("listed under %v after the reload: %v, want [gamma]", at, got)
	}
	alpha.setEndpoint(netip.MustParseAddrPort("198.18.0.78:40000")) // a lookup that ends late
	if n := indexSize(b); n != 1 || alpha.atListed {
		t.Fatalf("%d entries in the endpoint index (alpha listed: %v), want gamma's only", n, alpha.atListed)
	}

	malformed := b.drops[dropMalformed].Load()
	p.net.inject(at, netip.MustParseAddrPort(p.b.under), cookieFrom(t, p, p.a.key.PublicKey(), init))
	waitFor(t, 5*time.Second, "the cookie for the removed peer to be dropped", func() bool {
		return b.drops[dropMalformed].Load() == malformed+1
	})
	if n := alpha.sess.Status(b.now()).CookieReplies; n != 0 {
		t.Fatalf("the removed peer took %d cookies", n)
	}
	b.Close()
	if n := indexSize(b); n != 0 {
		t.Fatalf("%d entries in the endpoint index after Close", n)
	}
}

// Two peers at one endpoint (two IDs on one remote host) each take the
// reply to their own initiation.
func TestCookieRepliesForTwoPeersAtOneEndpoint(t *testing.T) {
	gammaKey := mustKey(t)
	p := newPair(t, func(a, b *conf.Config) {
		b.Peers = append(b.Peers, conf.Peer{ID: "gamma", PublicKey: gammaKey.PublicKey(), Endpoint: b.Peers[0].Endpoint})
	})
	rec := recordInitiations(p)
	b := p.b.dev
	set := b.peers.Load()
	at := netip.MustParseAddrPort(p.a.under)
	if got := listedAt(b, at); len(got) != 2 {
		t.Fatalf("listed under %v: %v, want alpha and gamma", at, got)
	}
	initAlpha, _ := rec.send(t, set.byID["alpha"])
	initGamma, _ := rec.send(t, set.byID["gamma"])
	under := netip.MustParseAddrPort(p.b.under)
	p.net.inject(at, under, cookieFrom(t, p, gammaKey.PublicKey(), initGamma))
	p.net.inject(at, under, cookieFrom(t, p, p.a.key.PublicKey(), initAlpha))
	waitFor(t, 5*time.Second, "both cookies to be taken", func() bool {
		return cookiesTaken(t, b, "alpha") == 1 && cookiesTaken(t, b, "gamma") == 1
	})
	if n := b.drops[dropMalformed].Load(); n != 0 {
		t.Fatalf("%d cookie replies dropped", n)
	}
}
