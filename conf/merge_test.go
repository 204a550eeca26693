package conf

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// mergeBase has a file peer whose encrypted packets go to two IP endpoints
// (a gateway group) and one by name, and a [directory] whose etcd is named
// by IPv4 and IPv6 addresses, by a host name and on loopback.
const mergeBase = `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["10.77.0.1/24"]

[[peer]]
id = "gw"
public_key = "PUB_B"
endpoint = ["198.18.5.5:51820", "[2001:db8:5::5]:51820"]
allowed_ips = ["10.77.1.0/24"]

[[peer]]
id = "named"
public_key = "PUB_C"
endpoint = "gw.example.net:51820"
allowed_ips = ["10.77.2.0/24"]

[directory]
etcd_endpoints = ["https://198.18.0.10:2379", "https://[2001:db8:e::10]:2379", "https://etcd.example.net:2379", "https://127.0.0.1:2379"]
prefix = "/stunnel/test/"
cache_file = "st0.directory"
`

func mergeFile(t *testing.T) *Config {
	t.Helper()
	c, err := Parse("st0.toml", []byte(expand(t, mergeBase)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func record(t *testing.T, id string, fill byte, endpoint string, ips ...string) Peer {
	t.Helper()
	p := Peer{ID: id, PublicKey: testKey(t, fill).PublicKey(), Endpoint: endpoint}
	for _, s := range ips {
		p.AllowedIPs = append(p.AllowedIPs, netip.MustParsePrefix(s))
	}
	return p
}

// A directory record that would route a file peer's own encrypted packets,
// or the way to etcd, into the tunnel is skipped with a one-line reason
// naming the record, the prefix and what it holds; the same pair written as
// two [[peer]] tables is refused by the file's checks.
func TestMergeSkipsRecordsThatLoopTraffic(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  Peer
		want string // "" = accepted
	}{
		{"routes a file peer's endpoint", record(t, "x", 20, "", "198.18.5.0/24"),
			`directory peer "x": allowed_ips 198.18.5.0/24 contains endpoint 198.18.5.5:51820 of peer "gw" (st0.toml:7); that peer's encrypted packets would loop into the tunnel (skipped)`},
		{"routes exactly that endpoint", record(t, "x", 20, "", "10.77.9.0/24", "198.18.5.5/32"),
			`allowed_ips 198.18.5.5/32 contains endpoint 198.18.5.5:51820 of peer "gw"`},
		{"routes a gateway group's second endpoint", record(t, "x", 20, "", "2001:db8:5::/48"),
			`allowed_ips 2001:db8:5::/48 contains endpoint [2001:db8:5::5]:51820 of peer "gw" (st0.toml:7)`},
		{"endpoint inside a file peer's routes", record(t, "x", 20, "10.77.1.9:51820", "10.77.9.0/24"),
			`directory peer "x": endpoint 10.77.1.9:51820 lies inside the allowed_ips of peer "gw"; its packets would loop into the tunnel (skipped)`},
		{"endpoint inside its own routes", record(t, "x", 20, "10.77.9.9:51820", "10.77.9.0/24"),
			`directory peer "x": endpoint 10.77.9.9:51820 lies inside the allowed_ips of peer "x"`},
		{"routes an etcd endpoint", record(t, "x", 20, "", "198.18.0.0/24"),
			`directory peer "x": allowed_ips 198.18.0.0/24 contains etcd endpoint 198.18.0.10 of [directory]; the directory would be reachable only through that peer (skipped)`},
		{"routes an IPv6 etcd endpoint", record(t, "x", 20, "", "2001:db8:e::/64"),
			`allowed_ips 2001:db8:e::/64 contains etcd endpoint 2001:db8:e::10 of [directory]`},
		// A /0 is not routed, but takes what the host routes into the
		// tunnel: an etcd in this host's own subnet would go to it.
		{"full tunnel past etcd", record(t, "x", 20, "", "::/0"),
			`allowed_ips ::/0 contains etcd endpoint 2001:db8:e::10 of [directory]`},

		// A loopback etcd is reached through the local table, before any
		// route of ours (TestMergeKeepsSlashZeroRecordWithLoopbackEtcd).
		{"covers the loopback etcd", record(t, "x", 20, "", "127.0.0.0/8"), ""},
		{"next to the endpoints", record(t, "x", 20, "198.18.8.1:51820", "198.18.4.0/24", "198.18.6.0/24", "2001:db8:6::/48"), ""},
		{"a named endpoint is not resolved", record(t, "x", 20, "", "10.77.9.0/24", "192.0.2.0/24"), ""},
	} {
		merged, skipped := MergePeers(mergeFile(t), []Peer{tc.rec})
		switch {
		case tc.want == "" && (len(skipped) != 0 || len(merged.Peers) != 3):
			t.Errorf("%s: record not used: %v", tc.name, skipped)
		case tc.want != "" && (len(skipped) != 1 || len(merged.Peers) != 2):
			t.Errorf("%s: record used (%d peers), want it skipped with %q; skipped: %v", tc.name, len(merged.Peers), tc.want, skipped)
		case tc.want != "" && (!strings.Contains(skipped[0].Error(), tc.want) || strings.Contains(skipped[0].Error(), "\n")):
			t.Errorf("%s: reason %q, want one line with %q", tc.name, skipped[0], tc.want)
		}
	}

	// The first case as a file: refused, so the merge now agrees with it.
	body := expand(t, mergeBase) + `
[[peer]]
id = "x"
public_key = "` + testKey(t, 20).PublicKey().String() + `"
allowed_ips = ["198.18.5.0/24"]
`
	body = strings.Replace(body, `"https://198.18.0.10:2379", `, "", 1) // only the endpoint loop remains
	if _, err := Parse("st0.toml", []byte(body)); err == nil || !strings.Contains(err.Error(), `lies inside allowed_ips 198.18.5.0/24 of peer "x"`) {
		t.Fatalf("the same peers as [[peer]] tables: %v, want the endpoint loop refused", err)
	}
}

// Records are taken first come, first served, and a record that is not used
// claims nothing: its key and allowed_ips stay free for later records, and a
// record already accepted is never dropped because of a later one.
func TestMergeSkippedRecordReservesNothing(t *testing.T) {
	loops := record(t, "a1", 21, "10.77.1.9:51820", "10.77.5.0/24") // endpoint inside gw's routes: skipped
	sameRoutes := record(t, "b1", 22, "", "10.77.5.0/24")
	sameKey := record(t, "c1", 21, "", "10.77.6.0/24")
	first := record(t, "d1", 23, "198.18.9.9:51820", "10.77.7.0/24")
	routesFirst := record(t, "e1", 24, "", "198.18.9.0/24") // holds d1's endpoint: skipped, d1 stays
	merged, skipped := MergePeers(mergeFile(t), []Peer{loops, sameRoutes, sameKey, first, routesFirst})
	var ids []string
	for _, p := range merged.Peers {
		ids = append(ids, p.ID)
	}
	if got := strings.Join(ids, ","); got != "gw,named,b1,c1,d1" {
		t.Fatalf("merged peers %s, want gw,named,b1,c1,d1; skipped: %v", got, skipped)
	}
	if len(skipped) != 2 || !strings.HasPrefix(skipped[0].Error(), `directory peer "a1": endpoint`) ||
		!strings.Contains(skipped[1].Error(), `directory peer "e1": allowed_ips 198.18.9.0/24 contains endpoint 198.18.9.9:51820 of peer "d1";`) {
		t.Fatalf("skipped %v, want a1 for its endpoint and e1 for holding d1's", skipped)
	}
	for _, err := range skipped {
		if strings.Contains(err.Error(), `peer "a1"`) && !strings.HasPrefix(err.Error(), `directory peer "a1"`) {
			t.Errorf("a record was skipped for clashing with a1, which is not used: %v", err)
		}
	}
}

// A directory record with a /0 (an exit gateway published in the
// directory) while etcd is reached on loopback is used as a peer: nothing
// can route 127.0.0.1 into the tunnel (the local table wins), and the
// record's /0 is not routed at all (no full tunnel comes from a record).
func TestMergeKeepsSlashZeroRecordWithLoopbackEtcd(t *testing.T) {
	base := `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["10.77.0.1/24"]

[directory]
etcd_endpoints = ["http://127.0.0.1:2379"]
prefix = "/stunnel/test/"
cache_file = "st0.directory"
`
	c, err := Parse("st0.toml", []byte(expand(t, base)))
	if err != nil {
		t.Fatal(err)
	}
	merged, skipped := MergePeers(c, []Peer{record(t, "exit", 20, "", "0.0.0.0/0")})
	t.Logf("peers %d skipped %v", len(merged.Peers), skipped)
	if len(skipped) != 0 {
		t.Errorf("record with 0.0.0.0/0 skipped although etcd is on loopback: %v", skipped)
	}
}

// An IP endpoint inside a /0 is no loop: a file peer's /0 is a full tunnel,
// which exempts the daemon's own packets, and a record's own /0 is not
// routed at all; crossCheck accepts both as [[peer]] tables, so the merge
// uses such records too.
func TestMergeEndpointInsideAFullTunnelIsNoLoop(t *testing.T) {
	head := `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["10.77.0.1/24", "fd00:77::1/64"]

[[peer]]
id = "hq"
public_key = "PUB_B"
endpoint = "198.18.5.5:51820"
allowed_ips = ["0.0.0.0/0"]
`
	dir := `
[directory]
etcd_endpoints = ["https://etcd.example.net:2379"]
prefix = "/stunnel/test/"
cache_file = "st0.directory"
`
	c, err := Parse("st0.toml", []byte(expand(t, head+dir)))
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t, "y", 20, "198.18.6.6:51820", "fd00:77::5/128")
	merged, skipped := MergePeers(c, []Peer{rec})
	t.Logf("record y: peers %d skipped %v", len(merged.Peers), skipped)
	file := expand(t, head) + `
[[peer]]
id = "y"
public_key = "` + testKey(t, 20).PublicKey().String() + `"
endpoint = "198.18.6.6:51820"
allowed_ips = ["fd00:77::5/128"]
`
	if _, ferr := Parse("st0.toml", []byte(file)); ferr != nil {
		t.Errorf("check refuses the pair as [[peer]] tables: %v", ferr)
	}
	if len(skipped) != 0 {
		t.Errorf("check accepts the pair as [[peer]] tables, the merge skips the record: %v", skipped)
	}

	// A record with /0 and its own IP endpoint (accepted in a file: TestFullTunnelWithIPEndpoint).
	c2, err := Parse("st0.toml", []byte(expand(t, `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["10.77.0.1/24"]
`+dir)))
	if err != nil {
		t.Fatal(err)
	}
	_, skipped2 := MergePeers(c2, []Peer{record(t, "exit", 21, "198.18.7.7:51820", "0.0.0.0/0")})
	t.Logf("record exit with /0 and IP endpoint: skipped %v", skipped2)
	if len(skipped2) != 0 {
		t.Errorf("a /0 record with an IP endpoint is skipped: %v", skipped2)
	}
}

// The records used are marked FromDirectory and the file's peers are not:
// the daemon makes a full tunnel only for the file's /0 (a record's could
// take all of a host's traffic on the word of whoever writes to etcd).
func TestMergeMarksDirectoryPeers(t *testing.T) {
	merged, skipped := MergePeers(mergeFile(t), []Peer{record(t, "x", 20, "", "fd00:77::9/128"), record(t, "y", 21, "", "10.77.9.0/24")})
	if len(skipped) != 0 || len(merged.Peers) != 4 {
		t.Fatalf("merged %d peers, skipped %v; want the file's two and both records", len(merged.Peers), skipped)
	}
	for _, p := range merged.Peers {
		if want := p.ID == "x" || p.ID == "y"; p.FromDirectory != want {
			t.Errorf("peer %s: FromDirectory %v, want %v", p.ID, p.FromDirectory, want)
		}
	}
}

// A record whose ID is a [[peer]] of the file is left out either way, the
// file's peer kept as written. With the same public key it is the operator
// giving this host its own settings for that peer (an exit's /0), marked
// ErrFileOverrides; with another key it is a conflict to fix.
func TestMergeFilePeerWithRecordsID(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fill     byte // the record's key; 2 is file peer gw's
		override bool
		want     string
	}{
		{"same key", 2, true, `st0.toml:7: peer id "gw": the file's [[peer]] is used in place of the directory record, which has the same public key`},
		{"another key", 20, false, `st0.toml:7: peer id "gw" is both a [[peer]] here and a directory record with another public key; the [[peer]] is used, remove one of them`},
	} {
		rec := record(t, "gw", tc.fill, "198.18.9.9:51820", "10.77.9.0/24")
		merged, skipped := MergePeers(mergeFile(t), []Peer{rec})
		if len(skipped) != 1 {
			t.Fatalf("%s: skipped %v, want the record", tc.name, skipped)
		}
		if got := errors.Is(skipped[0], ErrFileOverrides); got != tc.override || skipped[0].Error() != tc.want {
			t.Errorf("%s: %q (override %v), want %q (override %v)", tc.name, skipped[0], got, tc.want, tc.override)
		}
		if len(merged.Peers) != 2 || merged.Peers[0].ID != "gw" || merged.Peers[0].FromDirectory ||
			merged.Peers[0].AllowedIPs[0] != netip.MustParsePrefix("10.77.1.0/24") {
			t.Errorf("%s: merged %+v, want the file's peers as written", tc.name, merged.Peers)
		}
	}
}

// With records_within, a record whose allowed_ips leave those prefixes is
// skipped, with a reason naming the prefix: the host's opt-in to what etcd
// may route to it. /1 halves that would take all of a host's IPv4 traffic
// are the case it exists for.
func TestMergeRecordsWithin(t *testing.T) {
	c, err := Parse("st0.toml", []byte(expand(t, `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]

[directory]
etcd_endpoints = ["http://127.0.0.1:2379"]
prefix = "/stunnel/test/"
cache_file = "st0.directory"
records_within = ["198.19.0.0/16", "fd00:77::/64"]
`)))
	if err != nil {
		t.Fatal(err)
	}
	merged, skipped := MergePeers(c, []Peer{
		record(t, "inside", 20, "", "198.19.0.2/32", "198.19.9.0/24", "fd00:77::2/128"),
		record(t, "half", 21, "", "0.0.0.0/1"),
		record(t, "wider", 22, "", "198.18.0.0/15"),
		record(t, "v6out", 23, "", "fd00:78::2/128"),
	})
	if len(merged.Peers) != 1 || merged.Peers[0].ID != "inside" {
		t.Errorf("%d peers used, want only record inside", len(merged.Peers))
	}
	want := []string{
		`directory peer "half": allowed_ips 0.0.0.0/1 is not inside records_within of [directory] (skipped)`,
		`directory peer "wider": allowed_ips 198.18.0.0/15 is not inside records_within of [directory] (skipped)`,
		`directory peer "v6out": allowed_ips fd00:78::2/128 is not inside records_within of [directory] (skipped)`,
	}
	if len(skipped) != len(want) {
		t.Fatalf("skipped %v, want %d", skipped, len(want))
	}
	for i, w := range want {
		if skipped[i].Error() != w {
			t.Errorf("skipped[%d] = %q, want %q", i, skipped[i], w)
		}
	}
}
