package conf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/internal/etcdtest"
)

const directoryBase = `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["10.77.0.1/24"]

[[peer]]
id = "b"
public_key = "PUB_B"
allowed_ips = ["10.77.0.2/32"]
`

func TestDirectoryValid(t *testing.T) {
	dir := t.TempDir()
	etcdtest.MakeTLS(t, dir, []string{"198.18.0.10"}) // ca.pem, client.pem, client.key
	src := expand(t, directoryBase+`
[directory]
etcd_endpoints = ["https://198.18.0.10:2379", "https://198.18.0.11:2379", "https://[2001:db8::1]:2379"]
prefix = "/stunnel/overlay1/"
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client.key"
advertise_endpoint = "198.18.0.1:51820"
records_within = ["198.19.0.0/16", "fd00::/8"]
`)
	c, err := Parse(filepath.Join(dir, "st0.conf"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Directory
	if d == nil || len(d.Endpoints) != 3 || d.Prefix != "/stunnel/overlay1/" || d.CAFile != filepath.Join(dir, "ca.pem") ||
		d.KeyFile != filepath.Join(dir, "client.key") || d.CacheFile != "/var/lib/stunnel/st0.directory" || d.AdvertiseEndpoint != "198.18.0.1:51820" ||
		len(d.RecordsWithin) != 2 || d.RecordsWithin[1] != netip.MustParsePrefix("fd00::/8") {
		t.Fatalf("directory = %+v", d)
	}
	for _, eps := range []string{`["http://127.0.0.1:2379", "http://[::1]:2379", "http://localhost:2379"]`} {
		if _, err := Parse("x.conf", []byte(expand(t, directoryBase)+"\n[directory]\netcd_endpoints = "+eps+"\nprefix = \"/s/\"\n")); err != nil {
			t.Errorf("loopback http %s: %v", eps, err)
		}
	}
	c, err = Parse("x.conf", []byte(expand(t, directoryBase)))
	if err != nil || c.Directory != nil {
		t.Fatalf("no [directory]: %v %+v", err, c.Directory)
	}
}

func TestDirectoryInvalid(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "open.key"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	etcdtest.MakeTLS(t, dir, []string{"198.18.0.10"})
	cases := []struct{ body, want string }{
		{`etcd_endpoints = ["http://198.18.0.10:2379"]` + "\nprefix = \"/s/\"", "plain http to a non-loopback host"},
		// etcd's client would speak the first one's scheme to both: plain gRPC to 198.18.0.10.
		{`etcd_endpoints = ["http://127.0.0.1:2379", "https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"", "mix http (\"http://127.0.0.1:2379\") and https"},
		{`etcd_endpoints = ["https://198.18.0.10:2379", "http://[::1]:2379"]` + "\nprefix = \"/s/\"", "mix http"},
		{`etcd_endpoints = ["ftp://127.0.0.1:2379"]` + "\nprefix = \"/s/\"", "use https"},
		{`etcd_endpoints = ["https://198.18.0.10"]` + "\nprefix = \"/s/\"", "needs a host and a port"},
		// url.Parse takes any digits for a port; a dial to them never works.
		{`etcd_endpoints = ["https://198.18.0.10:99999"]` + "\nprefix = \"/s/\"", "port \"99999\" must be a number from 1 to 65535"},
		{`etcd_endpoints = ["https://198.18.0.10:0"]` + "\nprefix = \"/s/\"", "port \"0\" must be a number from 1 to 65535"},
		{`etcd_endpoints = []` + "\nprefix = \"/s/\"", "etcd_endpoints is empty"},
		{`prefix = "/s/"`, "needs etcd_endpoints"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]`, "needs prefix"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s\"", "must end with"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"s/\"", "must start with"},
		// Nested in the key space of a fleet at "/f/" (or at "/").
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/f/peers/eu/\"", `has the part "peers", where a fleet at "/f/" keeps its keys`},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/tickets-rotator/x/\"", `where a fleet at "/" keeps its keys`},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nca_file = \"nope.pem\"", "ca_file: cannot use"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nkey_file = \"open.key\"", "readable by group or others"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nca_file = \"junk.pem\"", "holds no PEM certificate"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\ncert_file = \"client.pem\"\nkey_file = \"server.key\"", "are not a certificate and its key"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\ncert_file = \"junk.pem\"\nkey_file = \"client.key\"", "are not a certificate and its key"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nendpoints = 1", "unknown key \"endpoints\""},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nadvertise_endpoint = \"198.18.0.1\"", "advertise_endpoint"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nrecords_within = []", "records_within is empty"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nrecords_within = [\"198.19.0.1/16\"]", "records_within \"198.19.0.1/16\" has host bits set; write 198.19.0.0/16"},
		{`etcd_endpoints = ["https://198.18.0.10:2379"]` + "\nprefix = \"/s/\"\nrecords_within = [\"198.19.0.0\"]", "records_within \"198.19.0.0\" needs a prefix length"},
	}
	for _, tc := range cases {
		src := expand(t, directoryBase) + "\n[directory]\n" + tc.body + "\n"
		_, err := Parse(filepath.Join(dir, "x.conf"), []byte(src))
		if err == nil {
			t.Errorf("%q: accepted", tc.body)
			continue
		}
		probs := problems(t, err)
		found := false
		for _, p := range probs {
			if strings.Contains(p.Msg, tc.want) && p.Line >= 12 {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: got %v, want %q at a [directory] line", tc.body, err, tc.want)
		}
	}
	// A peer_id with "/" cannot be published: the ID is the key's last part.
	src := strings.Replace(expand(t, directoryBase), `peer_id = "a"`, `peer_id = "eu/a"`, 1) +
		"\n[directory]\netcd_endpoints = [\"https://198.18.0.10:2379\"]\nprefix = \"/s/\"\nadvertise_endpoint = \"198.18.0.1:51820\"\n"
	if _, err := Parse(filepath.Join(dir, "x.conf"), []byte(src)); err == nil || !strings.Contains(err.Error(), `advertise_endpoint needs a peer_id without "/"`) {
		t.Errorf("peer_id with \"/\" and advertise_endpoint: %v", err)
	}
}

func TestMergePeers(t *testing.T) {
	c, err := Parse("x.conf", []byte(expand(t, directoryBase)))
	if err != nil {
		t.Fatal(err)
	}
	key := func(fill byte) Peer {
		return Peer{PublicKey: testKey(t, fill).PublicKey()}
	}
	mk := func(id string, fill byte, ips ...string) Peer {
		p := key(fill)
		p.ID = id
		for _, s := range ips {
			p.AllowedIPs = append(p.AllowedIPs, netip.MustParsePrefix(s))
		}
		return p
	}
	withEP := mk("e", 16, "10.77.0.16/32")
	withEP.Endpoint = "10.77.0.3:51820" // inside c's allowed_ips
	extra := []Peer{
		mk("c", 3, "10.77.0.3/32"),
		mk("b", 9, "10.77.0.9/32"),   // same ID as the file peer
		mk("d", 10, "10.77.0.0/28"),  // overlaps b and c
		mk("a", 11, "10.77.0.11/32"), // own ID
		mk("f", 3, "10.77.0.12/32"),  // key of c
		mk("g", 12, "10.77.0.0/24"),  // holds our address
		mk("h", 13),                  // no allowed_ips
		mk("i", 14, "10.77.0.15/31"), // host bits
		mk("j", 15, "fd77::/64", "10.78.0.0/16"),
		withEP,
	}
	m, skipped := MergePeers(c, extra)
	var ids []string
	for _, p := range m.Peers {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != "b,c,j" {
		t.Fatalf("merged peers %v, want b,c,j; skipped: %v", ids, skipped)
	}
	if len(skipped) != 7 { // all but b, c, j and a (own ID, silently)
		t.Fatalf("skipped %d, want 7: %v", len(skipped), skipped)
	}
	if !strings.HasPrefix(skipped[0].Error(), "x.conf:7: peer id \"b\" is both") {
		t.Errorf("duplicate ID message %q lacks FILE:LINE", skipped[0])
	}
	if len(c.Peers) != 1 {
		t.Errorf("MergePeers modified its input")
	}
}
