package conf

import (
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestEndpoints(t *testing.T) {
	good := []string{"198.18.0.2:51820", "[fd00::2]:1", "[fe80::1%eth0]:51820", "gw.example.net:65535", "gw:1", "gw.example.net.:4000", "a-b_c.d9:2"}
	bad := []string{"", ":51820", "198.18.0.2", "198.18.0.2:", "198.18.0.2:x", "0.0.0.0:1", "[::]:1", "224.0.0.1:1",
		"fd00::2:51820", "[gw.example.net]:1", "-gw.example:1", "a..b:1", "10.1:1", "host name:1", strings.Repeat("a", 64) + ".net:1"}
	for _, s := range good {
		if err := checkEndpoint(s); err != nil {
			t.Errorf("checkEndpoint(%q) = %v, want ok", s, err)
		}
	}
	for _, s := range bad {
		if err := checkEndpoint(s); err == nil {
			t.Errorf("checkEndpoint(%q) accepted", s)
		}
	}
}

func TestInterfaceNames(t *testing.T) {
	for _, s := range []string{"st0", "a", "stunnel-site_b1", "123456789012345", "st.0", "st0."} {
		if err := checkIfName(s); err != nil {
			t.Errorf("checkIfName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", ".st0", "...", "1234567890123456", "a/b", "a b", "a\tb", "a:b", "st%d", "a\x00"} {
		if checkIfName(s) == nil {
			t.Errorf("checkIfName(%q) accepted", s)
		}
	}
}

// The kernel's isspace (lib/ctype.c) counts byte 0xa0 as a space, and
// dev_valid_name tests each byte: a name whose UTF-8 holds that byte ("xà"
// is 78 c3 a0) passed check and then failed at up, TUNSETIFF EINVAL, exit 1.
func TestInterfaceNamesTheKernelTakes(t *testing.T) {
	for _, s := range []string{"xé", "zürich0", "gw-東京"} {
		if err := checkIfName(s); err != nil {
			t.Errorf("checkIfName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"xà", "Рига", "Š0", "a\u00a0b", "a\vb"} {
		if checkIfName(s) == nil {
			t.Errorf("checkIfName(%q) accepted; the kernel refuses it", s)
		}
	}
}

func TestPeerIDs(t *testing.T) {
	for _, s := range []string{"a", "site-b", "Zürich gateway", strings.Repeat("x", 64)} {
		if err := checkPeerID(s); err != nil {
			t.Errorf("checkPeerID(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", strings.Repeat("x", 65), "a\nb", "\xff", "tab\there"} {
		if checkPeerID(s) == nil {
			t.Errorf("checkPeerID(%q) accepted", s)
		}
	}
}

func TestHostAddresses(t *testing.T) {
	for _, s := range []string{"198.19.0.1/24", "198.19.0.0/31", "198.19.0.1/32", "fd00::/64", "fd00::1/64"} {
		p, err := parsePrefix(s)
		if err == nil {
			err = checkHostAddress(p)
		}
		if err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"198.19.0.255/24", "198.19.0.0/24", "0.0.0.0/0", "127.0.0.1/8", "224.1.1.1/32", "::ffff:1.2.3.4/128", "198.19.0.1/33", "198.19.0.1"} {
		p, err := parsePrefix(s)
		if err == nil {
			err = checkHostAddress(p)
		}
		if err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

// The line finder must not be fooled by comments, multi-line arrays,
// quoted keys, keys of the same name in other tables, or inline tables.
func TestKeyLines(t *testing.T) {
	src := `# name = "not this"
[interface]   # the host
  # peer_id = "nor this"
"name" = "st0"
address = [
  "198.19.0.1/24",
  # mtu = 5
]
mtu = 1400

[[ peer ]]
id = "b"
allowed_ips = ["x"]
[[peer]]
allowed_ips = ["y"]
id = "c"
extra = { id = "z", mtu = 1 }
`
	var raw map[string]any
	md, err := toml.Decode(src, &raw)
	if err != nil {
		t.Fatal(err)
	}
	got := locateKeys([]byte(src), md)
	want := map[string]int{
		"interface": 2, "interface.name": 4, "interface.address": 5, "interface.mtu": 9,
		"peer.0": 11, "peer.0.id": 12, "peer.0.allowed_ips": 13,
		"peer.1": 14, "peer.1.allowed_ips": 15, "peer.1.id": 16, "peer.1.extra": 17, "peer.1.extra.id": 17,
	}
	for k, l := range want {
		if got[k] != l {
			t.Errorf("line of %s = %d, want %d", k, got[k], l)
		}
	}
}

// An ID from etcd may be a megabyte with newlines and escapes in it: an
// error or log line shows its first MaxPeerIDLen bytes, quoted with every
// control character escaped, then "...". A valid ID shows as %q does.
func TestQuoteID(t *testing.T) {
	if got, want := QuoteID("host-7"), `"host-7"`; got != want {
		t.Errorf("QuoteID(host-7) = %s, want %s", got, want)
	}
	huge := "a\nforged=line\x1b[2J" + strings.Repeat("x", 1<<20)
	got := QuoteID(huge)
	if want := strconv.Quote(huge[:MaxPeerIDLen]) + "..."; got != want {
		t.Errorf("QuoteID(huge) = %s, want %s", got, want)
	}
	if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Errorf("QuoteID(huge) = %q holds a control character", got)
	}
	// Cut before a character that would not fit whole, not inside it.
	if got, want := QuoteID(strings.Repeat("é", MaxPeerIDLen)), strconv.Quote(strings.Repeat("é", MaxPeerIDLen/2))+"..."; got != want {
		t.Errorf("QuoteID of two-byte characters = %s, want %s", got, want)
	}
	if got, want := QuoteID("x"+strings.Repeat("é", MaxPeerIDLen)), strconv.Quote("x"+strings.Repeat("é", MaxPeerIDLen/2-1))+"..."; got != want {
		t.Errorf("QuoteID with a character across the cut = %s, want %s", got, want)
	}
	if got, want := EscapeBounded("/st/peers/a\nb"+strings.Repeat("y", 100), 16), `/st/peers/a\nb`+"yyy..."; got != want {
		t.Errorf("EscapeBounded = %s, want %s", got, want)
	}
}
