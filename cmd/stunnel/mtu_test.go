package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"stunnel/conf"
	"stunnel/internal/netns"
	"stunnel/internal/roottest"
)

// An underlay of 1300 bytes leaves 1240 for the tunnel over IPv4. With an
// IPv6 address on the device that derived MTU was set as is, and the
// kernel then refused the IPv6 address ("adding address fd77::1/64:
// invalid argument"): a config check accepted failed at up with exit 1.
// The derived MTU stops at IPv6's 1280 when the config uses IPv6.
func TestDerivedMTUKeepsIPv6Minimum(t *testing.T) {
	roottest.Require(t, "network namespaces")
	ns := fmt.Sprintf("stmtu-%d", os.Getpid())
	_ = netns.Delete(ns)
	if err := netns.Add(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Errorf("removing namespace %s: %v", ns, err)
		}
	})
	run, in := inNetns(t, ns)
	run("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	run("ip", "link", "set", "v0", "mtu", "1300", "up")
	run("ip", "link", "set", "v1", "up")
	run("ip", "addr", "add", "198.18.0.1/24", "dev", "v0")

	k, kb := mustGenKey(t), mustGenKey(t)
	for _, c := range []struct {
		addresses string
		want      int
	}{
		{`"198.19.0.1/24"`, 1240},
		{`"198.19.0.1/24", "fd77::1/64"`, conf.MinMTUIPv6},
	} {
		src := fmt.Sprintf("[interface]\nname = \"mt0\"\npeer_id = \"a\"\nprivate_key = %q\naddress = [%s]\n"+
			"[[peer]]\nid = \"b\"\npublic_key = %q\nendpoint = \"198.18.0.2:51820\"\nallowed_ips = [\"198.19.0.2/32\"]\n",
			k.Base64(), c.addresses, kb.PublicKey().String())
		cfg, err := conf.Parse("/etc/stunnel/mt0.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		got := 0
		in(func() error { got = chooseMTU(cfg, slog.New(slog.NewTextHandler(&logs, nil))); return nil })
		if got != c.want {
			t.Errorf("address [%s] over a 1300-byte underlay: mtu %d, want %d\n%s", c.addresses, got, c.want, logs.String())
		}
	}
}
