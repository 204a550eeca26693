package tunnel

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"

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
