package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"stunnel/conf"
)

// TestMappedSourceIsNotAllowed: a peer allowed every IPv4 source must not get
// an IPv6 packet from ::ffff:127.0.0.1 past allowed_ips (issue 12, finding 2):
// an IPv6 packet's addresses are looked up as IPv6 only.
func TestMappedSourceIsNotAllowed(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		b.Peers[0].AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("fd00::1/128")}
	})
	ok := ipv6UDP("fd00::1", "fd00::2", []byte("ok"))
	p.a.tun.toTunnel <- ok
	p.b.expect(t, ok)
	p.a.tun.toTunnel <- ipv6UDP("::ffff:127.0.0.1", "fd00::2", []byte("mapped"))
	waitFor(t, 5*time.Second, "the mapped-source packet to be dropped", func() bool {
		return p.b.peerStatus(t).Drops[DropSourceNotAllowed] == 1
	})
	after := ipv6UDP("fd00::1", "fd00::2", []byte("after"))
	p.a.tun.toTunnel <- after
	p.b.expect(t, after) // the mapped one never reached b's TUN
}

// TestMappedDestinationIsNotRoutedToIPv4Peer: an IPv6 packet to
// ::ffff:198.19.0.2 has no route when the only peer owns IPv4 ranges.
func TestMappedDestinationIsNotRoutedToIPv4Peer(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		a.Peers[0].AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	})
	p.a.tun.toTunnel <- ipv6UDP("fd00::1", "::ffff:198.19.0.2", []byte("mapped"))
	waitFor(t, 5*time.Second, "the no-route drop", func() bool {
		return p.a.dev.Status().Drops[DropNoRoute] == 1
	})
	if s := p.a.peerStatus(t); s.TxPackets != 0 {
		t.Fatalf("a sent %d packets to the IPv4-only peer", s.TxPackets)
	}
}
