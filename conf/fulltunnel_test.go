package conf

import (
	"fmt"
	"strings"
	"testing"
)

// A full tunnel with an IP endpoint is valid: the daemon keeps the
// endpoint's packets out of the tunnel with a firewall mark. A narrower
// prefix holding the endpoint is still the routing loop it always was.
func TestFullTunnelWithIPEndpoint(t *testing.T) {
	full := expand(t, iface+`[[peer]]
id = "gw"
public_key = "PUB_B"
endpoint = "198.18.0.2:51820"
allowed_ips = ["0.0.0.0/0", "::/0"]
`)
	if _, err := Parse("full.toml", []byte(full)); err != nil {
		t.Fatalf("full tunnel with an IP endpoint refused: %v", err)
	}
	loop := expand(t, iface+`[[peer]]
id = "gw"
public_key = "PUB_B"
endpoint = "198.18.0.2:51820"
allowed_ips = ["198.18.0.0/16"]
`)
	_, err := Parse("loop.toml", []byte(loop))
	if err == nil || !strings.Contains(err.Error(), "lies inside allowed_ips 198.18.0.0/16") {
		t.Fatalf("endpoint inside a /16 of allowed_ips: err = %v, want the routing-loop error", err)
	}
}

// Among [[peer]] tables a /0 clashes only with another /0: beside a full
// tunnel's head office, a branch may reach a second site directly (the
// longest match wins); two peers with the same /0 are still refused. A
// directory record gets no such exemption: beside the file's /0, its
// narrower prefix would take part of the full tunnel's traffic on the word
// of whoever writes to etcd.
func TestDefaultOverlapsOnlyADefault(t *testing.T) {
	head := iface + `[[peer]]
id = "hq"
public_key = "PUB_B"
endpoint = "198.18.0.2:51820"
allowed_ips = ["0.0.0.0/0", "::/0"]
`
	beside := expand(t, head+`
[[peer]]
id = "site-c"
public_key = "PUB_C"
endpoint = "198.18.0.3:51820"
allowed_ips = ["198.19.7.0/24", "fd00:7::/64"]
`)
	if _, err := Parse("beside.toml", []byte(beside)); err != nil {
		t.Errorf("a /24 beside a /0 refused: %v", err)
	}
	twice := expand(t, head+`
[[peer]]
id = "exit2"
public_key = "PUB_C"
endpoint = "198.18.0.3:51820"
allowed_ips = ["0.0.0.0/0"]
`)
	_, err := Parse("twice.toml", []byte(twice))
	if err == nil || !strings.Contains(err.Error(), `allowed_ips 0.0.0.0/0 of peer "exit2" overlaps 0.0.0.0/0 of peer "hq"`) {
		t.Errorf("two peers with 0.0.0.0/0: err = %v, want the overlap error", err)
	}

	c, err := Parse("st0.toml", []byte(expand(t, head)))
	if err != nil {
		t.Fatal(err)
	}
	merged, skipped := MergePeers(c, []Peer{
		record(t, "site-d", 20, "", "198.19.8.0/24"),
		record(t, "exit3", 21, "", "::/0"),
	})
	if len(merged.Peers) != 1 || len(skipped) != 2 ||
		!strings.Contains(skipped[0].Error(), `directory peer "site-d": allowed_ips 198.19.8.0/24 overlaps those of peer "hq"`) ||
		!strings.Contains(skipped[1].Error(), `directory peer "exit3": allowed_ips ::/0 overlaps those of peer "hq"`) {
		t.Errorf("records site-d (/24) and exit3 (::/0) beside hq's /0s: peers %d, skipped %v; want both refused", len(merged.Peers), skipped)
	}
	// Nor does a record's /0 sit beside a narrower prefix.
	c, err = Parse("st0.toml", []byte(expand(t, beside[:strings.Index(beside, "[[peer]]")])))
	if err != nil {
		t.Fatal(err)
	}
	_, skipped = MergePeers(c, []Peer{record(t, "site-d", 20, "", "198.19.8.0/24"), record(t, "exit4", 22, "", "0.0.0.0/0")})
	if len(skipped) != 1 || !strings.Contains(skipped[0].Error(), `directory peer "exit4": allowed_ips 0.0.0.0/0 overlaps those of peer "site-d"`) {
		t.Errorf("record exit4 (0.0.0.0/0) beside record site-d (/24): skipped %v; want exit4 refused", skipped)
	}
}

// A full tunnel's routing table and firewall mark are numbered by
// listen_port, and 253, 254 and 255 are the kernel's default, main and
// local tables. With 254 up failed with a misleading "table 254 is in use:
// another full tunnel?"; with 255 it put the default route in the local
// table, consulted before the rule that exempts the tunnel's own packets,
// so they looped into the tunnel. check accepted both.
func TestFullTunnelPortIsNotAKernelTable(t *testing.T) {
	peer := "[[peer]]\nid = \"gw\"\npublic_key = \"PUB_B\"\nendpoint = \"198.18.0.2:51820\"\nallowed_ips = [%s]\n"
	for _, port := range []int{253, 254, 255} {
		src := expand(t, iface+fmt.Sprintf("listen_port = %d\n", port)+fmt.Sprintf(peer, `"0.0.0.0/0"`))
		_, err := Parse("full.toml", []byte(src))
		if err == nil {
			t.Errorf("listen_port %d with a full tunnel accepted", port)
			continue
		}
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Line != 6 || !strings.Contains(ps[0].Msg, fmt.Sprintf("listen_port %d", port)) {
			t.Errorf("listen_port %d: %v; want one problem at its line", port, err)
		}
	}
	// Without a /0 the port numbers no table: any port will do.
	if _, err := Parse("site.toml", []byte(expand(t, iface+"listen_port = 254\n"+fmt.Sprintf(peer, `"198.19.0.2/32"`)))); err != nil {
		t.Errorf("listen_port 254 without a full tunnel: %v", err)
	}
}
