package tunnel

import (
	"net/netip"
	"testing"
	"time"
)

func TestLinkChatter(t *testing.T) {
	for addr, want := range map[string]bool{
		"ff02::16": true, "ff02::2": true, "ff01::1": true, "ff12::1:2": true,
		"ff05::2": false, "ff0e::1": false, "fd00::1": false, "fe80::1": false,
		"224.0.0.22": false, "198.19.0.1": false, "::ffff:224.0.0.1": false,
	} {
		if got := linkChatter(netip.MustParseAddr(addr)); got != want {
			t.Errorf("linkChatter(%s) = %v, want %v", addr, got, want)
		}
	}
}

// The kernel's MLD report into the tunnel is not a no_route drop; a unicast
// packet to an address no peer owns still is.
func TestLinkChatterNotCountedAsNoRoute(t *testing.T) {
	p := newPair(t, nil)
	p.a.tun.toTunnel <- ipv6UDP("fd00::1", "ff02::16", []byte("mld"))
	p.a.tun.toTunnel <- ipv6UDP("fd00::1", "fd00::99", []byte("nobody"))
	waitFor(t, 5*time.Second, "the unicast packet to count as no_route", func() bool {
		return p.a.dev.Status().Drops["no_route"] >= 1
	})
	if n := p.a.dev.Status().Drops["no_route"]; n != 1 {
		t.Fatalf("no_route = %d, want 1 (the MLD report must not count)", n)
	}
}
