package netnstests

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"stunnel/internal/netns"
)

// TestFDStoreFullTunnelRestarts: a full tunnel under a stand-in for systemd
// with the unit's descriptor store. The daemon leaves its policy rules and
// table route to the kept device at a restart, so that nothing leaves in the
// clear while no daemon runs; the next start must take them over (a
// `systemctl restart`), and after a full stop, which takes the device but
// not the rules, a fresh start must too (`systemctl stop; systemctl start`).
// A stop outside systemd then leaves no rule behind.
func TestFDStoreFullTunnelRestarts(t *testing.T) {
	l := newLab(t)
	const internet4 = "198.19.99.1" // "the internet", behind b
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", underA, nsB, "u0", underB)
	a := l.newNode(nsA, "host-a", underA, overA+"/24", over6A+"/64")
	b := l.newNode(nsB, "host-b", underB, overB+"/24", over6B+"/64")
	a.addPeer(b, true, "0.0.0.0/0", "::/0")
	// a derives its mtu from the path to b's endpoint, which a reaches by
	// its default route, as a head office on the internet: an unmarked
	// lookup would get the kept full tunnel's table, that is st0 itself.
	a.MTU = "none"
	a.Peers[0].Endpoint = "198.18.2.2:51820"
	b.addPeer(a, true, overA+"/32", over6A+"/128")
	l.run(nsA, "ip", "route", "add", "default", "via", addrOf(underB))
	l.run(nsB, "ip", "addr", "add", internet4+"/32", "dev", "lo")
	l.run(nsB, "ip", "addr", "add", "198.18.2.2/32", "dev", "lo")
	table := strconv.Itoa(listenPort)
	m := newServiceManager(t, l.dir)
	stop := func() {
		t.Helper()
		if code := a.stop(); code != 0 {
			t.Fatalf("a exited with %d on SIGTERM, want 0", code)
		}
	}
	// systemctl stop: the store is emptied and the device goes with its
	// routes.
	fullStop := func() {
		t.Helper()
		stop()
		m.stopService()
		waitFor(t, 5*time.Second, "the device to go once the store is emptied", func() bool { return !a.hasDevice() })
	}
	mtu := func() string {
		t.Helper()
		f := strings.Fields(l.run(nsA, "ip", "link", "show", "dev", devName))
		for i, w := range f[:len(f)-1] {
			if w == "mtu" {
				return f[i+1]
			}
		}
		t.Fatalf("no mtu in ip link show dev %s: %v", devName, f)
		return ""
	}
	var firstMTU string
	fullTunnelUp := func(when string) {
		t.Helper()
		if got := mtu(); firstMTU != "" && got != firstMTU {
			t.Errorf("%s: %s has mtu %s, %s at the first start: derived through the tunnel itself?", when, devName, got, firstMTU)
		}
		for _, fam := range []string{"-4", "-6"} {
			rules := l.run(nsA, "ip", fam, "rule", "show")
			if strings.Count(rules, "lookup "+table) != 1 || strings.Count(rules, "suppress_prefixlength 0") != 1 {
				t.Fatalf("%s: want one rule each for table %s and suppress_prefixlength, ip %s rule:\n%s", when, table, fam, rules)
			}
			if r := l.run(nsA, "ip", fam, "route", "show", "table", table); !strings.Contains(r, "default dev "+devName) {
				t.Fatalf("%s: ip %s table %s has no default route through %s: %q", when, fam, table, devName, r)
			}
		}
	}

	b.start()
	a.startManaged(m)
	pingUntil(t, nsA, internet4, sessionWait)
	fullTunnelUp("first start")
	firstMTU = mtu()

	// systemctl restart: the store keeps the device, so its routes stay,
	// and so must the rules: no packet may take the main table meanwhile.
	stop()
	fullTunnelUp("while no daemon runs")
	a.startManaged(m)
	fullTunnelUp("after the restart")
	pingUntil(t, nsA, internet4, 40*time.Second)

	// A start that fails after adopting the kept device (here: its metrics
	// port is taken) exits 1, and systemd starts it again a few seconds
	// later, as often as it fails. Meanwhile the device is still there:
	// its addresses, routes and rules must stay too, or everything leaves
	// in the clear until a start succeeds.
	stop()
	addrs := l.run(nsA, "ip", "addr", "show", "dev", devName)
	routes := l.run(nsA, "ip", "route", "show", "dev", devName)
	const metricsAddr = "127.0.0.1:9586"
	var busy net.Listener
	if err := netns.Do(nsA, func() (err error) { busy, err = net.Listen("tcp", metricsAddr); return err }); err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	a.Extra = "[metrics]\nlisten = \"" + metricsAddr + "\"\n"
	a.writeConfig()
	cmd := m.command(nsA, stunnelBin, "up", "-c", a.cfgPath)
	cmd.Env = append(cmd.Env, "STUNNEL_RUN_DIR="+a.runDir)
	if out, code := upMustFail(t, cmd); code != 1 || !strings.Contains(out, metricsAddr) {
		t.Fatalf("a start whose metrics port is taken: exit %d, want 1 naming %s; output:\n%s", code, metricsAddr, out)
	}
	fullTunnelUp("after a failed start")
	if got := l.run(nsA, "ip", "addr", "show", "dev", devName); got != addrs {
		t.Fatalf("a failed start changed the kept device's addresses:\nbefore\n%s\nafter\n%s", addrs, got)
	}
	if got := l.run(nsA, "ip", "route", "show", "dev", devName); got != routes {
		t.Fatalf("a failed start changed the kept device's routes:\nbefore\n%s\nafter\n%s", routes, got)
	}
	busy.Close()
	a.Extra = ""
	a.startManaged(m)
	fullTunnelUp("after the start that followed a failed one")
	pingUntil(t, nsA, internet4, 40*time.Second)

	// systemctl stop, then start: the rules are the host's, not the
	// device's, and stay until a start.
	fullStop()
	a.startManaged(m)
	fullTunnelUp("after stop and start")
	pingUntil(t, nsA, internet4, 40*time.Second)

	// Outside systemd a stop removes the device and everything with it.
	fullStop()
	a.start()
	fullTunnelUp("after a start without systemd")
	stop()
	for _, fam := range []string{"-4", "-6"} {
		rules := l.run(nsA, "ip", fam, "rule", "show")
		if strings.Contains(rules, "lookup "+table) || strings.Contains(rules, "suppress_prefixlength") {
			t.Errorf("ip %s rules left after a stop without systemd:\n%s", fam, rules)
		}
	}
}
