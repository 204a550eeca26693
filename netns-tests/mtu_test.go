package netnstests

import (
	"strconv"
	"strings"
	"testing"

	"stunnel/internal/netns"
)

// Without an mtu key the TUN's MTU is the underlay path MTU to the endpoint
// minus the tunnel's overhead (60 bytes over IPv4), so the largest packet
// that fits crosses the tunnel unfragmented with DF set and one byte more is
// refused; a configured mtu too big for the path is kept but warned about.
func TestMTUFromUnderlay(t *testing.T) {
	for _, c := range []struct {
		name     string
		underlay int
	}{{"1500", 1500}, {"1400", 1400}} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t)
			a, b := l.twoHosts(func(a, b *node) {
				if c.underlay != 1500 {
					l.run(a.ns, "ip", "link", "set", "u0", "mtu", strconv.Itoa(c.underlay))
					l.run(b.ns, "ip", "link", "set", "u0", "mtu", strconv.Itoa(c.underlay))
				}
				a.MTU = "none"
				b.MTU = "1420"
			})
			want := c.underlay - 60
			if got := linkMTU(t, l, a.ns); got != want {
				t.Fatalf("derived MTU %d over a %d underlay, want %d", got, c.underlay, want)
			}
			if got := linkMTU(t, l, b.ns); got != 1420 {
				t.Fatalf("configured MTU 1420 became %d", got)
			}
			warned := strings.Contains(b.log(), "exceeds the underlay path MTU")
			if fits := 1420+60 <= c.underlay; warned == fits {
				t.Errorf("mtu 1420 over a %d underlay: warned=%v, want %v; log:\n%s", c.underlay, warned, !fits, b.log())
			}
			pingUntil(t, a.ns, overB, sessionWait)
			// 28 bytes of IPv4 and ICMP headers around the payload.
			l.run(a.ns, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", strconv.Itoa(want-28), overB)
			if _, err := netns.Run(a.ns, "ping", "-c", "1", "-W", "1", "-M", "do", "-s", strconv.Itoa(want-27), overB); err == nil {
				t.Errorf("a %d-byte packet with DF left through a %d-byte MTU", want+1, want)
			}
		})
	}
}

func linkMTU(t *testing.T, l *lab, ns string) int {
	t.Helper()
	f := strings.Fields(l.run(ns, "ip", "-o", "link", "show", "dev", devName))
	for i := range f[:len(f)-1] {
		if f[i] == "mtu" {
			n, err := strconv.Atoi(f[i+1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no mtu in ip link output %q", f)
	return 0
}

// Over an IPv6 underlay the overhead is 80 bytes: 1500 gives 1420.
func TestMTUFromIPv6Underlay(t *testing.T) {
	l := newLab(t)
	nsA, nsB := l.ns("a6"), l.ns("b6")
	l.veth(nsA, "u0", "fd00:18::1/64", nsB, "u0", "fd00:18::2/64")
	a := l.newNode(nsA, "host-a6", "fd00:18::1", overA+"/24")
	b := l.newNode(nsB, "host-b6", "fd00:18::2", overB+"/24")
	a.addPeer(b, false, overB+"/32")
	a.Peers[0].Endpoint = "[fd00:18::2]:51820"
	b.addPeer(a, false, overA+"/32")
	a.MTU = "none"
	a.start()
	b.start()
	if got := linkMTU(t, l, a.ns); got != 1420 {
		t.Fatalf("derived MTU %d over a 1500-byte IPv6 underlay, want 1420", got)
	}
	pingUntil(t, a.ns, overB, sessionWait)
	l.run(a.ns, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", strconv.Itoa(1420-28), overB)
}
