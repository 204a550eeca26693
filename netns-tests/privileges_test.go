package netnstests

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/netns"
	"stunnel/internal/roottest"
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

// unitCapabilityArgs turns the capability lines of the shipped systemd unit
// into setpriv(1) options, so a test can start the daemon as systemd would:
// root, with the unit's bounding and ambient sets and no_new_privs.
func unitCapabilityArgs(t *testing.T) []string {
	t.Helper()
	unit, err := os.ReadFile("../contrib/stunnel@.service")
	if err != nil {
		t.Fatal(err)
	}
	names := func(v string) string {
		var out []string
		for _, c := range strings.Fields(v) {
			out = append(out, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		return strings.Join(out, ",")
	}
	var args []string
	for _, line := range strings.Split(string(unit), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		switch {
		case !ok || strings.HasPrefix(k, "#"):
		case k == "CapabilityBoundingSet":
			args = append(args, "--bounding-set=-all,"+names(v))
		case k == "AmbientCapabilities":
			args = append(args, "--inh-caps="+names(v), "--ambient-caps="+names(v))
		case k == "NoNewPrivileges" && v == "yes":
			args = append(args, "--no-new-privs")
		}
	}
	if len(args) == 0 || !strings.HasPrefix(args[0], "--bounding-set") {
		t.Fatalf("no CapabilityBoundingSet= in contrib/stunnel@.service: %q", args)
	}
	return args
}

// Under the shipped unit the daemon narrows itself to what its config
// needs, as it does when started as full root, and says nothing about it:
// the unit's bounding set is what any config may need (CAP_SETPCAP so the
// daemon can drop the rest). It used to lack CAP_SETPCAP, so every start
// under systemd kept CAP_CHOWN and logged "running with more privileges
// than needed".
func TestDaemonUnderTheUnitHoldsOnlyWhatItNeeds(t *testing.T) {
	roottest.RequireTool(t, "setpriv", "util-linux")
	const (
		netAdmin    = 1 << 12 // CAP_NET_ADMIN
		bindService = 1 << 10 // CAP_NET_BIND_SERVICE
		chown       = 1 << 0  // CAP_CHOWN
	)
	caps := unitCapabilityArgs(t)
	for _, c := range []struct {
		name string
		edit func(t *testing.T, n *node, config string) string
		want uint64
	}{
		{"default", func(t *testing.T, n *node, config string) string { return config }, netAdmin},
		{"control groups", func(t *testing.T, n *node, config string) string {
			g := runID + "-cg"
			unixGroup(t, g)
			return config + fmt.Sprintf("\n[control]\nread_group = %q\n", g)
		}, netAdmin | chown},
		{"port below 1024", func(t *testing.T, n *node, config string) string {
			return strings.Replace(config, fmt.Sprintf("listen_port = %d", listenPort), "listen_port = 1023", 1)
		}, netAdmin | bindService},
		// The metrics listener is bound after the narrowing: it used to
		// fail with "bind: permission denied" (exit 1).
		{"metrics 999", func(t *testing.T, n *node, config string) string {
			return config + "\n[metrics]\nlisten = \"127.0.0.1:999\"\n"
		}, netAdmin | bindService},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t)
			n := l.newNode(l.ns("a"), "host-a", underA, overA+"/24")
			n.writeConfig()
			n.writeRaw(c.edit(t, n, n.config()))
			args := append(append([]string{}, caps...), stunnelBin, "up", "-c", n.cfgPath)
			n.launch(netns.Exec(n.ns, "setpriv", args...), "show answers, device exists", nil)
			got := capsOf(t, n.cmd.Process.Pid)
			if got["CapEff"] != c.want || got["CapPrm"] != c.want || got["CapBnd"] != c.want || got["CapAmb"] != 0 {
				t.Errorf("under the unit's capabilities (setpriv %s) it holds CapEff=%#x CapPrm=%#x CapBnd=%#x CapAmb=%#x, want %#x",
					strings.Join(caps, " "), got["CapEff"], got["CapPrm"], got["CapBnd"], got["CapAmb"], c.want)
			}
			if log := n.log(); strings.Contains(log, "level=WARN") {
				t.Errorf("a start under the unit logs a warning:\n%s", log)
			}
			if code := n.stop(); code != 0 {
				t.Errorf("exit %d after a clean stop; log:\n%s", code, n.log())
			}
		})
	}
}
