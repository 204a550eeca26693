package conf

import (
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
