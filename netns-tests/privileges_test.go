package netnstests

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/netns"
)

// capsOf reads the Cap* masks of a running process.
func capsOf(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	caps := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.HasPrefix(k, "Cap") {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			caps[k] = n
		}
	}
	return caps
}

// Issue 12, finding 8: a running `stunnel up`, started as full root, holds
// exactly CAP_NET_ADMIN (listen_port 51820 needs no CAP_NET_BIND_SERVICE),
// in its effective, permitted and bounding sets, and still does its work:
// traffic, a reload that adds a route, a clean stop that removes the device.
func TestDaemonHoldsOnlyNetAdmin(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	const netAdmin = 1 << 12 // CAP_NET_ADMIN
	for _, n := range []*node{a, b} {
		c := capsOf(t, n.cmd.Process.Pid)
		if c["CapEff"] != netAdmin || c["CapPrm"] != netAdmin || c["CapBnd"] != netAdmin || c["CapAmb"] != 0 || c["CapInh"]&^netAdmin != 0 {
			t.Errorf("%s holds CapEff=%#x CapPrm=%#x CapBnd=%#x CapAmb=%#x CapInh=%#x, want CAP_NET_ADMIN (%#x) only",
				n.ID, c["CapEff"], c["CapPrm"], c["CapBnd"], c["CapAmb"], c["CapInh"], netAdmin)
		}
	}
	pingUntil(t, a.ns, overB, sessionWait)

	// Reload with one more allowed prefix: its route needs CAP_NET_ADMIN.
	a.Peers[0].AllowedIPs = append(a.Peers[0].AllowedIPs, "198.19.77.0/24")
	a.writeConfig()
	a.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := netns.Run(a.ns, "ip", "route", "show", "198.19.77.0/24")
		if strings.Contains(out, "198.19.77.0/24") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reload did not add the route; log:\n%s", a.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(a.log(), "more privileges than needed") {
		t.Errorf("a could not drop privileges:\n%s", a.log())
	}
	if code := a.stop(); code != 0 {
		t.Fatalf("a exited %d after a clean stop; log:\n%s", code, a.log())
	}
	if a.hasDevice() {
		t.Error("a's device outlived the stop")
	}
}
