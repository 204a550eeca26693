package netnstests

import (
	"strconv"
	"strings"
	"testing"
)

// A full tunnel (allowed_ips 0.0.0.0/0 and ::/0, with an IP endpoint) on a
// host that already has a default route: everything goes through the
// tunnel, the tunnel's own UDP packets still reach the endpoint (firewall
// mark and policy routing table, as wg-quick), and on stop the rules and
// the table are gone.
func TestFullTunnel(t *testing.T) {
	l := newLab(t)
	const (
		internet4, internet6 = "198.19.99.1", "fd00:99::1" // "the internet", behind b
	)
	a, b := l.twoHosts(func(a, b *node) {
		a.Peers[0].AllowedIPs = []string{"0.0.0.0/0", "::/0"}
		// a's own default route, as on any real host: the one a plain
		// `ip route add 0.0.0.0/0 dev st0` would clash with.
		l.run(a.ns, "ip", "route", "add", "default", "via", addrOf(underB))
		l.run(b.ns, "ip", "addr", "add", internet4+"/32", "dev", "lo")
		l.run(b.ns, "ip", "addr", "add", internet6+"/128", "dev", "lo", "nodad")
	})
	table := strconv.Itoa(listenPort)
	rules4 := l.run(a.ns, "ip", "-4", "rule", "show")
	rules6 := l.run(a.ns, "ip", "-6", "rule", "show")
	for _, rules := range []string{rules4, rules6} {
		if !strings.Contains(rules, "not from all fwmark 0xca6c lookup "+table) || !strings.Contains(rules, "lookup main suppress_prefixlength 0") {
			t.Fatalf("policy rules missing while the full tunnel runs:\n%s", rules)
		}
	}
	if r := l.run(a.ns, "ip", "-4", "route", "show", "table", table); !strings.Contains(r, "default dev "+devName) {
		t.Fatalf("table %s has no default route through %s: %q", table, devName, r)
	}
	if r := l.run(a.ns, "ip", "-4", "route", "show", "default"); !strings.Contains(r, "via "+addrOf(underB)) {
		t.Fatalf("a's own default route is gone: %q", r)
	}

	pingUntil(t, a.ns, internet4, sessionWait)
	before := a.peer(b.ID).TxPackets
	ping(t, a.ns, internet4, 3)
	ping(t, a.ns, internet6, 3)
	if got := a.peer(b.ID).TxPackets - before; got < 6 {
		t.Errorf("a sent %d packets through the tunnel for 6 pings to the internet, want >= 6", got)
	}
	tcpStream(t, a.ns, b.ns, internet4, streamOpts{Size: 1 << 20})

	if code := a.stop(); code != 0 {
		t.Fatalf("a exited %d", code)
	}
	for _, fam := range []string{"-4", "-6"} {
		if r := l.run(a.ns, "ip", fam, "route", "show", "table", table); strings.TrimSpace(r) != "" {
			t.Errorf("ip %s route table %s not empty after stop: %q", fam, table, r)
		}
		rules := l.run(a.ns, "ip", fam, "rule", "show")
		if strings.Contains(rules, "fwmark") || strings.Contains(rules, "suppress_prefixlength") || strings.Contains(rules, "lookup "+table) {
			t.Errorf("ip %s rules left after stop:\n%s", fam, rules)
		}
	}
	if r := l.run(a.ns, "ip", "-4", "route", "show", "default"); !strings.Contains(r, "via "+addrOf(underB)) {
		t.Errorf("a's own default route is gone after stop: %q", r)
	}
}
