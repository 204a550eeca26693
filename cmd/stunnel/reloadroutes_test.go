package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"stunnel/conf"
	"stunnel/internal/netns"
	"stunnel/internal/roottest"
	"stunnel/tunnel"
	"stunnel/tunnel/netcfg"
	"stunnel/tunnel/udpbind"
)

// A reload whose new allowed_ips cannot be routed (another interface of the
// host already routes the subnet: EEXIST) is refused as a whole: the error
// names the route and the interface, the device keeps its peers, and the
// kernel keeps exactly the routes it had. A later good reload still applies,
// routes added and removed.
func TestReloadRouteFailureKeepsRunningConfig(t *testing.T) {
	ns := routeClashNetns(t, "strr", "rrt0")

	head, peerB, peerC, write := clashConfig(t, "rrt0", `"198.19.0.1/24"`)
	path := write(head + peerB(`"198.19.5.0/24"`))
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d, bind, link := clashDevice(t, ns, "rrt0", cfg, log)
	reloadIn := func(running *conf.Config) (got *conf.Config, rerr error) {
		t.Helper()
		if err := netns.Do(ns, func() error {
			got, rerr = reload(running, d, link, bind, &endpointResolver{}, log, new(slog.LevelVar), nil)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got, rerr
	}
	routes := func() string {
		t.Helper()
		out, err := netns.Run(ns, "ip", "-4", "route", "show")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := routes()

	// The bad file widens b (a route that can be added) and adds c, whose
	// subnet other0 routes.
	write(head + peerB(`"198.19.5.0/24", "198.19.6.0/24"`) + peerC)
	got, rerr := reloadIn(cfg)
	t.Logf("log:\n%s", logs.String())
	switch {
	case rerr == nil:
		t.Errorf("reload whose route 198.19.7.0/24 exists on other0 succeeded; want it refused")
	case !strings.Contains(rerr.Error(), "198.19.7.0/24") || !strings.Contains(rerr.Error(), "rrt0") || strings.Contains(rerr.Error(), "\n"):
		t.Errorf("reload error %q: want one line naming route 198.19.7.0/24 and interface rrt0", rerr)
	}
	if got != cfg {
		t.Errorf("reload returned a new config after a refused reload; want the running one")
	}
	if p := devicePeerIPs(d); len(p) != 1 || !slices.Equal(p["b"], []string{"198.19.5.0/24"}) {
		t.Errorf("device peers after the refused reload: %v; want only b with 198.19.5.0/24", p)
	}
	if after := routes(); after != before {
		t.Errorf("kernel routes changed by the refused reload:\nbefore:\n%safter:\n%s", before, after)
	}
	if r := link.Routes(); !slices.Equal(r, mainRoutes(cfg)) {
		t.Errorf("link's own record of its routes after the refused reload: %v; want %v", r, mainRoutes(cfg))
	}

	// A good file after it applies whole: b moves to 198.19.6.0/24.
	write(head + peerB(`"198.19.6.0/24"`))
	got, rerr = reloadIn(cfg)
	if rerr != nil {
		t.Fatalf("good reload: %v", rerr)
	}
	if p := devicePeerIPs(d); len(p) != 1 || !slices.Equal(p["b"], []string{"198.19.6.0/24"}) {
		t.Errorf("device peers after the good reload: %v; want only b with 198.19.6.0/24", p)
	}
	r := routes()
	if !strings.Contains(r, "198.19.6.0/24 dev rrt0") || strings.Contains(r, "198.19.5.0/24") || !strings.Contains(r, "198.19.7.0/24 dev other0") {
		t.Errorf("kernel routes after the good reload:\n%swant 198.19.6.0/24 via rrt0, no 198.19.5.0/24, 198.19.7.0/24 still via other0", r)
	}
	if len(got.Peers) != 1 {
		t.Errorf("running config after the good reload has %d peers; want 1", len(got.Peers))
	}
}

// routeClashNetns makes a namespace (name-PID, removed when the test ends,
// even on failure) holding TUN device dev and a second one, other0, that
// already routes 198.19.7.0/24: the clash the reload tests provoke. It
// skips (or fails, STUNNEL_REQUIRE_NETNS=1) unless root.
func routeClashNetns(t *testing.T, name, dev string) string {
	t.Helper()
	roottest.Require(t, "network namespaces and TUN devices")
	ns := fmt.Sprintf("%s-%d", name, os.Getpid())
	_ = netns.Delete(ns) // a leftover of a killed run of this pid
	if err := netns.Add(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Errorf("removing namespace %s: %v", ns, err)
		}
	})
	for _, cmd := range [][]string{
		{"ip", "tuntap", "add", "mode", "tun", "name", dev},
		{"ip", "tuntap", "add", "mode", "tun", "name", "other0"},
		{"ip", "link", "set", "other0", "up"},
		{"ip", "route", "add", "198.19.7.0/24", "dev", "other0"},
	} {
		if _, err := netns.Run(ns, cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// inNetns runs commands (run: output, failing the test on error) and
// functions (in: on a thread in ns) in namespace ns.
func inNetns(t *testing.T, ns string) (run func(cmd ...string) string, in func(f func() error)) {
	run = func(cmd ...string) string {
		t.Helper()
		out, err := netns.Run(ns, cmd[0], cmd[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	in = func(f func() error) {
		t.Helper()
		if err := netns.Do(ns, f); err != nil {
			t.Fatal(err)
		}
	}
	return run, in
}

// clashDevice is the reload tests' running tunnel for cfg, as up makes it:
// the device (on an in-memory TUN, closed when the test ends) and kernel
// device dev of namespace ns (routeClashNetns) given cfg's addresses and
// routes.
func clashDevice(t *testing.T, ns, dev string, cfg *conf.Config, log *slog.Logger) (*tunnel.Device, *udpbind.Bind, *netcfg.Link) {
	t.Helper()
	bind := udpbind.New()
	d, err := tunnel.New(cfg, tunnel.Options{TUN: newChanTUN(), Bind: bind, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var link *netcfg.Link
	if err := netns.Do(ns, func() (err error) {
		link, err = netcfg.Apply(dev, 0, cfg.Interface.Addresses, mainRoutes(cfg))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d, bind, link
}

// devicePeerIPs is the allowed_ips of each peer d runs, by ID: what the
// reload tests compare after a refused reload, which must leave them as
// they were.
func devicePeerIPs(d *tunnel.Device) map[string][]string {
	out := map[string][]string{}
	for _, p := range d.Status().Peers {
		out[p.ID] = p.AllowedIPs
	}
	return out
}

// clashConfig is the reload tests' config file for device dev with the
// given addresses: head is its [interface], peerB(ips) peer b with those
// allowed_ips, peerC peer c asking for 198.19.7.0/24 (routed by other0,
// routeClashNetns), and write puts a text in the file and returns its path.
func clashConfig(t *testing.T, dev, addresses string) (head string, peerB func(ips string) string, peerC string, write func(src string) string) {
	t.Helper()
	key, kb, kc := mustGenKey(t), mustGenKey(t), mustGenKey(t)
	head = "[interface]\nname = \"" + dev + "\"\npeer_id = \"a\"\nprivate_key = \"" + key.Base64() + "\"\naddress = [" + addresses + "]\nlisten_port = 0\n"
	peerB = func(ips string) string {
		return "[[peer]]\nid = \"b\"\npublic_key = \"" + kb.PublicKey().String() + "\"\nallowed_ips = [" + ips + "]\n"
	}
	peerC = "[[peer]]\nid = \"c\"\npublic_key = \"" + kc.PublicKey().String() + "\"\nallowed_ips = [\"198.19.7.0/24\"]\n"
	path := filepath.Join(t.TempDir(), "a.toml")
	write = func(src string) string {
		t.Helper()
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return head, peerB, peerC, write
}
