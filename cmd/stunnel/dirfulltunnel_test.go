package main

import (
	"bytes"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"stunnel/conf"
)

// dirFullTunnelFile is a config file for device dev with IPv4 and IPv6
// addresses: load(ips) writes it with file peer b holding ips, and loads it.
func dirFullTunnelFile(t *testing.T, dev string) (load func(bIPs string) *conf.Config) {
	t.Helper()
	head, peerB, _, write := clashConfig(t, dev, `"198.19.0.1/24", "fd00:77::1/64"`)
	return func(bIPs string) *conf.Config {
		t.Helper()
		cfg, err := conf.Load(write(head + peerB(bIPs)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
}

// The full tunnel's families, at start (the initial merge) and at a reload
// (the merge applyMergedLocked hands to applyReload), come from the file's
// [[peer]] tables only: a directory record's /0 is in the merged peers but
// adds no family, whoever wrote it to etcd.
func TestDirectoryDefaultAddsNoFullTunnelFamily(t *testing.T) {
	load := dirFullTunnelFile(t, "dft0")
	file := load(`"0.0.0.0/0"`)
	x := attachTestPeer("x", "::/0")
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{x}}, log: slog.New(slog.DiscardHandler), file: file, reported: map[string]bool{}}

	start := ds.initial()
	if ids := peerIDs(start.Peers); !slices.Equal(ids, []string{"b", "x"}) {
		t.Fatalf("initial merge has peers %v, want b and record x", ids)
	}
	if v4, v6 := fullTunnelFamilies(start); !v4 || v6 {
		t.Errorf("full tunnel at start: ipv4 %v, ipv6 %v; want IPv4 only (file peer b's 0.0.0.0/0), not record x's ::/0", v4, v6)
	}

	// A reload whose file drops b's /0: record z's 0.0.0.0/0 becomes
	// usable (b holds no IPv4 any more) and must not keep IPv4's.
	z := attachTestPeer("z", "0.0.0.0/0")
	ds.peers = []conf.Peer{z}
	unlock := ds.lock()
	var merged []string
	var v4, v6 bool
	_, err := ds.applyMergedLocked(load(`"fd00:78::/64"`), func(cfg *conf.Config) error {
		merged = peerIDs(cfg.Peers)
		v4, v6 = fullTunnelFamilies(cfg)
		return nil
	})
	unlock()
	if err != nil || !slices.Equal(merged, []string{"b", "z"}) {
		t.Fatalf("reload merge: peers %v, err %v; want b and record z", merged, err)
	}
	if v4 || v6 {
		t.Errorf("full tunnel after the reload: ipv4 %v, ipv6 %v; want none: only record z has a /0", v4, v6)
	}
}

// While the full tunnel routes a family into the device, a directory peer
// runs without its /0 of that family (it would get all of that traffic);
// a file peer's /0 and the peer's other prefixes stay, and cfg itself is
// not changed.
func TestWithoutRoutedDefaultsHoldsBackDirectoryDefaults(t *testing.T) {
	p := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	cfg := &conf.Config{Peers: []conf.Peer{
		{ID: "b", AllowedIPs: p("0.0.0.0/0")},
		{ID: "x", AllowedIPs: p("fd00:99::5/128", "::/0"), FromDirectory: true},
		{ID: "z", AllowedIPs: p("0.0.0.0/0"), FromDirectory: true},
	}}
	ips := func(c *conf.Config) map[string][]netip.Prefix {
		out := map[string][]netip.Prefix{}
		for _, pr := range c.Peers {
			out[pr.ID] = pr.AllowedIPs
		}
		return out
	}
	for _, c := range []struct {
		name   string
		v4, v6 bool
		held   bool
		want   map[string][]netip.Prefix
	}{
		{"no full tunnel", false, false, false, ips(cfg)},
		{"IPv6 routed", false, true, true, map[string][]netip.Prefix{"b": p("0.0.0.0/0"), "x": p("fd00:99::5/128"), "z": p("0.0.0.0/0")}},
		{"both routed", true, true, true, map[string][]netip.Prefix{"b": p("0.0.0.0/0"), "x": p("fd00:99::5/128"), "z": nil}},
	} {
		out, held := withoutRoutedDefaults(cfg, c.v4, c.v6)
		if held != c.held || (!held && out != cfg) {
			t.Errorf("%s: held %v (same config %v), want held %v", c.name, held, out == cfg, c.held)
		}
		got := ips(out)
		for id, want := range c.want {
			if !slices.Equal(got[id], want) {
				t.Errorf("%s: peer %s runs with %v, want %v", c.name, id, got[id], want)
			}
		}
	}
	if got := ips(cfg); !slices.Equal(got["x"], p("fd00:99::5/128", "::/0")) || !slices.Equal(got["z"], p("0.0.0.0/0")) {
		t.Errorf("withoutRoutedDefaults changed its argument: %v", got)
	}
}

// A directory peer with a /0 is logged once at Info, by ID, when it comes
// into use; not again on later changes that leave its /0s as they are, but
// again when they change or when it comes back after going away.
func TestDirectoryDefaultLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	const msg = "a record's /0 is not made a default route; a full tunnel comes only from a [[peer]] in the config file"
	count := func() int { return strings.Count(logs.String(), msg) }
	file := attachTestConfig()
	x := attachTestPeer("x", "0.0.0.0/0")
	other := attachTestPeer("y", "fd00:99::/64")
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{x, other}}, log: slog.New(slog.NewTextHandler(&logs, nil)), file: file, reported: map[string]bool{}}
	d := newAttachTestDevice(t, ds.initial())
	t.Cleanup(func() { d.Close() })
	ds.attach(d, nil)
	if n := count(); n != 1 {
		t.Fatalf("x's /0 logged %d times at start, want once:\n%s", n, logs.String())
	}
	line := logs.String()
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "peer=x") || !strings.Contains(line, "allowed_ips=0.0.0.0/0") ||
		strings.Contains(line, x.PublicKey.String()) || strings.Count(line, "\n") != 1 {
		t.Errorf("want one Info line naming peer x and its /0, no key:\n%s", line)
	}

	moved := other
	moved.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("fd00:98::/64")}
	ds.onChange([]conf.Peer{x, moved}) // another record changes
	ds.onChange([]conf.Peer{x, other})
	if n := count(); n != 1 {
		t.Errorf("x's /0 logged %d times after changes that leave it as it is, want once", n)
	}
	both := x
	both.AllowedIPs = append(slices.Clone(x.AllowedIPs), netip.MustParsePrefix("::/0"))
	ds.onChange([]conf.Peer{both}) // y would overlap ::/0 now
	if n := count(); n != 2 || !strings.Contains(logs.String(), `allowed_ips=0.0.0.0/0,::/0`) {
		t.Errorf("x's /0s changed: logged %d times in all, want 2, the second naming both:\n%s", n, logs.String())
	}
	ds.onChange(nil)
	ds.onChange([]conf.Peer{both})
	if n := count(); n != 3 {
		t.Errorf("x came back: logged %d times in all, want 3", n)
	}
	if strings.Contains(logs.String(), "peer=y") {
		t.Errorf("record y, without a /0, was logged as one:\n%s", logs.String())
	}
}

// In a namespace, as up runs it: a directory record's /0 makes no default
// route in the full tunnel's table (51820 with listen_port 0) and no policy
// rule, at start and after a reload, while the file's /0 still makes its
// own; and a reload whose file drops its /0 as a record's /0 of that
// family becomes usable takes the full tunnel down as it would without the
// record, the record's peer then running with its /0.
func TestDirectoryDefaultRouteIsNoFullTunnel(t *testing.T) {
	ns := routeClashNetns(t, "stdft", "dft0")
	run, in := inNetns(t, ns)
	load := dirFullTunnelFile(t, "dft0")
	cfg := load(`"198.19.5.0/24"`)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	x := attachTestPeer("x", "::/0")
	z := attachTestPeer("z", "0.0.0.0/0") // used only while the file has no IPv4 peer
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{x, z}}, log: log, file: cfg, reported: map[string]bool{}}
	initial := ds.initial()
	d, bind, link := clashDevice(t, ns, "dft0", initial, log)
	res := &endpointResolver{}
	in(func() error {
		_, err := addFullTunnel(initial, link, bind, res, fullTunnelTable(initial), log)
		return err
	})
	ds.attach(d, link)
	cfg = initial // the running config, as in up

	// fullTunnel says which families have the table's default route and
	// rules, and fails the test on a half-made one.
	fullTunnel := func(stage string) (v4, v6 bool) {
		t.Helper()
		for _, fam := range []string{"-4", "-6"} {
			rules := run("ip", fam, "rule", "show")
			var route string // "show table 51820" fails while the table does not exist
			for _, l := range strings.SplitAfter(run("ip", fam, "route", "show", "table", "all"), "\n") {
				if strings.Contains(l, "table 51820") {
					route += l
				}
			}
			on := strings.Contains(rules, "not from all fwmark 0xca6c lookup 51820") && strings.Contains(rules, "suppress_prefixlength 0") &&
				strings.Contains(route, "default dev dft0")
			off := !strings.Contains(rules, "51820") && !strings.Contains(rules, "suppress_prefixlength") && strings.TrimSpace(route) == ""
			if on == off {
				t.Fatalf("%s: ip %s full tunnel half made:\nrules:\n%stable 51820:\n%s", stage, fam, rules, route)
			}
			if fam == "-4" {
				v4 = on
			} else {
				v6 = on
			}
		}
		if l4, l6 := link.FullTunnel(); l4 != v4 || l6 != v6 {
			t.Errorf("%s: link records a full tunnel ipv4 %v ipv6 %v, the kernel has ipv4 %v ipv6 %v", stage, l4, l6, v4, v6)
		}
		return v4, v6
	}
	wantPeers := func(stage string, want map[string][]string) {
		t.Helper()
		if got := devicePeerIPs(d); !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s: device peers %v, want %v", stage, got, want)
		}
	}
	reloadFile := func(stage string, bIPs string) {
		t.Helper()
		load(bIPs) // writes the file reload reads
		var rerr error
		in(func() error {
			cfg, rerr = reload(cfg, d, link, bind, res, log, new(slog.LevelVar), ds)
			return nil
		})
		if rerr != nil {
			t.Fatalf("%s: reload: %v", stage, rerr)
		}
	}

	wantPeers("start", map[string][]string{"b": {"198.19.5.0/24"}, "x": {"::/0"}})
	if v4, v6 := fullTunnel("start"); v4 || v6 {
		t.Errorf("start: full tunnel ipv4 %v ipv6 %v; want none: only record x has a /0", v4, v6)
	}
	if m := res.mark.Load(); m != 0 {
		t.Errorf("start: resolver mark %d; want none without a full tunnel", m)
	}

	reloadFile("file adds 0.0.0.0/0", `"198.19.5.0/24", "0.0.0.0/0"`)
	wantPeers("file adds 0.0.0.0/0", map[string][]string{"b": {"198.19.5.0/24", "0.0.0.0/0"}, "x": {"::/0"}})
	if v4, v6 := fullTunnel("file adds 0.0.0.0/0"); !v4 || v6 {
		t.Errorf("after a reload adding b's 0.0.0.0/0: full tunnel ipv4 %v ipv6 %v; want IPv4 only", v4, v6)
	}

	// b leaves IPv4: z's 0.0.0.0/0 no longer overlaps it, x's ::/0 does
	// (a record's /0 clashes with any prefix of its family), and only once
	// IPv4's full tunnel is gone may z have its /0.
	reloadFile("file drops its /0", `"fd00:78::/64"`)
	wantPeers("file drops its /0", map[string][]string{"b": {"fd00:78::/64"}, "z": {"0.0.0.0/0"}})
	if v4, v6 := fullTunnel("file drops its /0"); v4 || v6 {
		t.Errorf("after a reload dropping b's 0.0.0.0/0 with record z's in use: full tunnel ipv4 %v ipv6 %v; want none", v4, v6)
	}

	// Nor a directory change: z deleted, then x in use again after a
	// reload that gives b back its IPv4 subnet.
	in(func() error { ds.onChange([]conf.Peer{x}); return nil })
	wantPeers("z deleted", map[string][]string{"b": {"fd00:78::/64"}})
	if v4, v6 := fullTunnel("z deleted"); v4 || v6 {
		t.Errorf("after record z was deleted: full tunnel ipv4 %v ipv6 %v; want none", v4, v6)
	}
	reloadFile("x back", `"198.19.5.0/24"`)
	wantPeers("x back", map[string][]string{"b": {"198.19.5.0/24"}, "x": {"::/0"}})
	if v4, v6 := fullTunnel("x back"); v4 || v6 {
		t.Errorf("with record x in use again: full tunnel ipv4 %v ipv6 %v; want none", v4, v6)
	}
}
