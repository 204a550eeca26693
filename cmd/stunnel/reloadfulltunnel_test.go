package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"stunnel/conf"
	"stunnel/internal/netns"
	"stunnel/tunnel/control"
)

// A reload that turns on a full tunnel the kernel refuses (the tunnel's
// routing table 51820 already has a default route: another full tunnel on
// the host) is refused as a whole: `stunnel reload` exits 1 with one line
// naming the table and the device, and the device's peers, the kernel's
// rules and routes of every table, and the socket and resolver marks are as
// before. That holds when IPv4 went in and IPv6 failed (the IPv4 half is
// taken back), and when the full tunnel went in but a route of the same
// reload failed after it. A good reload then applies it, and one that drops
// the /0 removes it.
func TestReloadFullTunnelFailureKeepsRunningConfig(t *testing.T) {
	ns := routeClashNetns(t, "strft", "rft0") // other0 routes 198.19.7.0/24
	run, _ := inNetns(t, ns)
	// Another full tunnel's IPv6 default in our table (listen_port 0: 51820);
	// other0 also routes the subnet peer c will ask for.
	conflict6 := []string{"ip", "-6", "route", "add", "default", "dev", "other0", "table", "51820"}
	run(conflict6...)

	head, peerB, peerC, write := clashConfig(t, "rft0", `"198.19.0.1/24", "fd00:77::1/64"`)
	path := write(head + peerB(`"198.19.5.0/24"`))
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	d, bind, link := clashDevice(t, ns, "rft0", cfg, log)
	res := &endpointResolver{}

	// `stunnel reload` through a control socket whose Reload is run's:
	// reload in the namespace, the running config kept or replaced.
	t.Setenv(control.RunDirEnv, t.TempDir())
	running := newRunningConfig(cfg) // the handler's goroutine writes it
	listenControl(t, "rft0", control.Handlers{
		Status: func() ([]byte, error) { return []byte(`{}`), nil },
		Reload: func() (file string, rerr error) {
			if err := netns.Do(ns, func() error {
				next, err := reload(running.Load(), d, link, bind, res, log, new(slog.LevelVar), nil)
				running.Store(next)
				rerr = err
				return nil
			}); err != nil {
				return "", err
			}
			return absConfigPath(running.Load().Path), rerr
		},
	})

	// What a refused reload must leave alone: the kernel's policy rules and
	// every table's routes, the marks of the UDP sockets and the resolver.
	marks := func() string {
		t.Helper()
		var b strings.Builder
		fd4, fd6, err := bind.DupFDs()
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range []int{fd4, fd6} {
			if fd < 0 {
				continue
			}
			mark, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "socket mark %d\n", mark)
		}
		fmt.Fprintf(&b, "resolver mark %d\n", res.mark.Load())
		return b.String()
	}
	state := func() string {
		t.Helper()
		var b strings.Builder
		for _, fam := range []string{"-4", "-6"} {
			b.WriteString(run("ip", fam, "rule", "show"))
			b.WriteString(run("ip", fam, "route", "show", "table", "all"))
		}
		b.WriteString(marks())
		return b.String()
	}

	for _, c := range []struct {
		name, file string
		want       []string // in the error line
		then       func()
	}{
		// IPv4's table route and rules go in, IPv6's route is refused.
		{"table in use", head + peerB(`"198.19.5.0/24", "0.0.0.0/0", "::/0"`), []string{"rft0", "::/0", "table 51820", "file exists"},
			func() { conflict6[3] = "del"; run(conflict6...) }}, // the other full tunnel goes
		// The IPv6 full tunnel goes in, then c's route is refused.
		{"route after it refused", head + peerB(`"198.19.5.0/24", "::/0"`) + peerC, []string{"rft0", "198.19.7.0/24"}, func() {}},
	} {
		before := state()
		write(c.file)
		code, stdout, stderr := admin("reload", "reload", "", "-i", "rft0")
		if code != exitRuntime || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "stunnel reload: failed, running configuration kept: ") {
			t.Errorf("%s: stunnel reload: exit %d, stdout %q, stderr %q; want exit 1 and one line: failed, running configuration kept", c.name, code, stdout, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: reload error %q does not say %q", c.name, stderr, w)
			}
		}
		if running.Load() != cfg {
			t.Errorf("%s: the refused reload replaced the running config", c.name)
		}
		if p := devicePeerIPs(d); len(p) != 1 || !slices.Equal(p["b"], []string{"198.19.5.0/24"}) {
			t.Errorf("%s: device peers after the refused reload: %v; want only b with 198.19.5.0/24", c.name, p)
		}
		if after := state(); after != before {
			t.Errorf("%s: the refused reload changed the kernel or the marks:\nbefore:\n%safter:\n%s", c.name, before, after)
		}
		if v4, v6 := link.FullTunnel(); v4 || v6 {
			t.Errorf("%s: link records a full tunnel after the refused reload: v4 %v, v6 %v", c.name, v4, v6)
		}
		c.then()
	}

	// The other full tunnel gone, IPv4's applies, then IPv6's joins it, in
	// files that name the port bound at start (listen_port 0 gave a random
	// one, and a reload may say it): the table and mark stay the start's
	// 51820 across both, or IPv4's rule would no longer exempt the socket.
	port := fmt.Sprint(d.Status().ListenPort)
	drift := func(s string) bool { return port != "51820" && strings.Contains(s, port) } // 51820 itself: one in ~28000 runs
	headPort := strings.Replace(head, "listen_port = 0", "listen_port = "+port, 1)
	write(headPort + peerB(`"198.19.5.0/24", "0.0.0.0/0"`))
	if code, _, stderr := admin("reload", "reload", "", "-i", "rft0"); code != exitOK {
		t.Fatalf("good reload: exit %d, %s", code, stderr)
	}
	write(headPort + peerB(`"198.19.5.0/24", "0.0.0.0/0", "::/0"`))
	if code, _, stderr := admin("reload", "reload", "", "-i", "rft0"); code != exitOK {
		t.Fatalf("good reload adding ::/0, listen_port = %s: exit %d, %s", port, code, stderr)
	}
	for _, fam := range []string{"-4", "-6"} {
		if r := run("ip", fam, "rule", "show"); !strings.Contains(r, "not from all fwmark 0xca6c lookup 51820") || !strings.Contains(r, "suppress_prefixlength 0") || drift(r) {
			t.Errorf("ip %s rules after the good reloads: want not fwmark 51820 lookup 51820, nothing of %s:\n%s", fam, port, r)
		}
		if r := run("ip", fam, "route", "show", "table", "51820"); !strings.Contains(r, "default dev rft0") {
			t.Errorf("ip %s table 51820 after the good reloads: %q", fam, r)
		}
	}
	if m := marks(); !strings.Contains(m, "socket mark 51820\n") || drift(m) || strings.Contains(m, "socket mark 0\n") || res.mark.Load() != 51820 {
		t.Errorf("marks after the good reloads: want 51820 everywhere:\n%s", m)
	}

	// Dropping the /0 takes the full tunnel out again, after the peer.
	write(head + peerB(`"198.19.5.0/24"`))
	if code, _, stderr := admin("reload", "reload", "", "-i", "rft0"); code != exitOK {
		t.Fatalf("reload dropping the /0: exit %d, %s", code, stderr)
	}
	for _, fam := range []string{"-4", "-6"} {
		if r := run("ip", fam, "rule", "show"); strings.Contains(r, "51820") || strings.Contains(r, "suppress_prefixlength") {
			t.Errorf("ip %s rules left after the /0 was dropped:\n%s", fam, r)
		}
	}
	if v4, v6 := link.FullTunnel(); v4 || v6 {
		t.Errorf("link records a full tunnel after the /0 was dropped: v4 %v, v6 %v", v4, v6)
	}
}
