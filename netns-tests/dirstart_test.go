package netnstests

import (
	"fmt"
	"strings"
	"testing"

	"stunnel/internal/netns"
)

// TestDirectoryRecordWithRefusedRouteAtStart: a directory record whose
// route the kernel refuses on this host (another interface routes its
// subnet) is left out at start, as at a change or a reload, and the tunnel
// comes up with the rest. Before, `up` exited 1 on it: one record anyone
// with write access to etcd can make kept every such host of the fleet down,
// in a restart loop under systemd.
func TestDirectoryRecordWithRefusedRouteAtStart(t *testing.T) {
	l := newLab(t)
	hosts := map[string]string{}
	fleet := l.etcdOnHub(1, hosts)
	nodes := map[string]*node{}
	for i, n := range []string{"a", "b"} {
		ns := l.ns(n)
		under := fmt.Sprintf("198.18.61.%d/24", i+1) // the etcd subnet of etcdOnHub
		hosts[ns] = under
		nodes[n] = l.newNode(ns, "rs-"+n, under, fmt.Sprintf("198.19.62.%d/24", i+1))
	}
	l.hub(hosts)
	nsByIP := map[string]string{}
	for ns, a := range hosts {
		nsByIP[addrOf(a)] = ns
	}
	fleet.start(t, nsByIP)
	a, b := nodes["a"], nodes["b"]
	for _, n := range []*node{a, b} {
		n.Extra = fleet.section()
		n.writeConfig()
	}
	// On a, another interface routes 198.19.63.0/24, which record x claims.
	l.run(a.ns, "ip", "tuntap", "add", "mode", "tun", "name", "other0")
	l.run(a.ns, "ip", "link", "set", "other0", "up")
	l.run(a.ns, "ip", "route", "add", "198.19.63.0/24", "dev", "other0")
	x := newKeyPair(t)
	if out, err := netns.Run(a.ns, stunnelBin, "directory", "put", "-c", a.cfgPath,
		"-id", "x", "-public-key", x.public, "-allowed-ips", "198.19.63.0/24"); err != nil {
		t.Fatalf("directory put x: %v\n%s", err, out)
	}
	fleet.put(t, a, a)
	fleet.put(t, a, b)

	b.start()
	a.start() // fails the test if a exits before it is ready
	pingUntil(t, a.ns, overlayOf(b), sessionWait)
	if _, ok := findPeer(a.show(), "x"); ok {
		t.Error("record x runs on a although its route was refused")
	}
	if log := a.log(); !strings.Contains(log, `directory peer \"x\"`) || !strings.Contains(log, "198.19.63.0/24") {
		t.Errorf("a's log does not say why record x is not used:\n%s", log)
	}
	if out := l.run(a.ns, "ip", "-4", "route", "show", "198.19.63.0/24"); strings.Contains(out, devName) {
		t.Errorf("198.19.63.0/24 routed into %s although other0 has it: %s", devName, out)
	}
}
