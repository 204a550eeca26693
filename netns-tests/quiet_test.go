package netnstests

import (
	"strings"
	"testing"
)

// A healthy tunnel is quiet: the kernel gives the TUN device no IPv6
// link-local address, so it sends no router solicitations (nor anything
// else of its own) into the tunnel, and no `no_route` drops appear while
// real traffic flows for several seconds (the kernel's first solicitation
// comes about a second after link up, the next ones every 4 s).
func TestTunSendsNoRouterSolicitations(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	for _, n := range []*node{a, b} {
		out := l.run(n.ns, "ip", "-6", "addr", "show", "dev", devName)
		if strings.Contains(out, "fe80:") {
			t.Errorf("%s: the TUN device has a link-local address, so the kernel solicits routers through it:\n%s", n.ID, out)
		}
		if mode := l.run(n.ns, "ip", "-d", "link", "show", "dev", devName); !strings.Contains(mode, "addrgenmode none") {
			t.Errorf("%s: addrgenmode is not none:\n%s", n.ID, mode)
		}
	}
	pingUntil(t, a.ns, over6B, sessionWait)
	// Six seconds of pings both ways: past the first solicitation and the
	// second one, had the kernel sent them.
	ping6 := func(n *node, to string) { ping(t, n.ns, to, 6) }
	ping6(a, over6B)
	ping6(b, overA)
	for _, n := range []*node{a, b} {
		if got := n.drops("", "no_route"); got != 0 {
			t.Errorf("%s: %d no_route drops in a healthy tunnel; show: %+v", n.ID, got, n.show().Drops)
		}
	}
}
