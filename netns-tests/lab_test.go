package netnstests

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"stunnel/internal/netns"
	"stunnel/internal/waitfor"
)

// lab is one test's set of hosts. Everything it makes is removed in
// t.Cleanup, in reverse order of creation (processes before namespaces).
type lab struct {
	t   *testing.T
	dir string // per-test temp dir for configs, keys, logs, run dirs
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireNetns(t)
	return &lab{t: t, dir: t.TempDir()}
}

// ns makes a namespace whose name starts with the run ID and ends with short
// (for reading logs), with loopback up, forwarding on and reverse-path
// filtering off, so only stunnel decides which packets pass.
func (l *lab) ns(short string) string {
	l.t.Helper()
	name := runID + "-" + short
	if err := netns.Add(name); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			l.t.Errorf("cleanup: %v", err)
		}
	})
	l.sysctl(name, "net.ipv4.ip_forward", "1")
	l.sysctl(name, "net.ipv6.conf.all.forwarding", "1")
	l.sysctl(name, "net.ipv4.conf.all.rp_filter", "0")
	l.sysctl(name, "net.ipv4.conf.default.rp_filter", "0")
	return name
}

func (l *lab) sysctl(ns, key, value string) {
	l.t.Helper()
	l.run(ns, "sysctl", "-q", "-w", key+"="+value)
}

// run runs a command inside ns and fails the test if it fails.
func (l *lab) run(ns, name string, args ...string) string {
	l.t.Helper()
	out, err := netns.Run(ns, name, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// veth joins two namespaces; addresses are "" for none.
func (l *lab) veth(nsA, ifA, addrA, nsB, ifB, addrB string) {
	l.t.Helper()
	if err := netns.Veth(nsA, ifA, prefix(l.t, addrA), nsB, ifB, prefix(l.t, addrB)); err != nil {
		l.t.Fatal(err)
	}
}

// addAddr adds one more address to an interface (IPv6 without DAD).
func (l *lab) addAddr(ns, ifname, addr string) {
	l.t.Helper()
	if err := netns.AddAddr(ns, ifname, prefix(l.t, addr)); err != nil {
		l.t.Fatal(err)
	}
}

// hub makes a switch namespace with a bridge and plugs each host into it
// through interface "u0" with the given underlay address: one L2 segment for
// meshes and for attackers that must reach a victim's underlay address.
func (l *lab) hub(hosts map[string]string) {
	l.t.Helper()
	sw := l.ns("sw")
	l.run(sw, "ip", "link", "add", "br0", "type", "bridge")
	l.run(sw, "ip", "link", "set", "br0", "up")
	i := 0
	for ns, addr := range hosts {
		i++
		port := "p" + strconv.Itoa(i)
		l.veth(ns, "u0", addr, sw, port, "")
		l.run(sw, "ip", "link", "set", port, "master", "br0")
	}
}

// noOffloads turns off segmentation and receive coalescing on an interface,
// so captures, netem duplication and replays work on wire-sized packets.
func (l *lab) noOffloads(ns, ifname string) {
	l.t.Helper()
	l.run(ns, "ethtool", "-K", ifname, "gso", "off", "tso", "off", "gro", "off", "tx-udp-segmentation", "off")
}

func prefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	if s == "" {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatalf("bad test address %q: %v", s, err)
	}
	return p
}

// addrOf strips the prefix length: "198.18.0.1/24" -> "198.18.0.1".
func addrOf(s string) string {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// waitFor polls cond every 50 ms until it holds or the deadline passes, then
// fails the test naming what it waited for. No test sleeps and hopes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, timeout, 50*time.Millisecond, what, cond)
}
