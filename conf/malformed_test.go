package conf

import (
	"fmt"
	"strings"
	"testing"
)

// iface is a valid [interface] of lines 1-5; cases append from line 6.
const iface = `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`

// peerB is a valid peer; appended after iface its header is line 6.
const peerB = `[[peer]]
id = "b"
public_key = "PUB_B"
allowed_ips = ["198.19.0.2/32"]
`

func TestMalformed(t *testing.T) {
	cases := []struct {
		name string
		src  string
		line int
		msg  string
	}{
		{"syntax error", iface + "mtu = = 3\n", 6, "TOML syntax"},
		{"unknown top-level table", iface + "[intreface]\nmtu = 1\n", 6, `unknown key "intreface" in the top level`},
		{"unknown interface key with hint", iface + "listen_prot = 5\n", 6, `unknown key "listen_prot" in [interface]`},
		{"unknown key hint", iface + "listen_prot = 5\n", 6, `did you mean "listen_port"?`},
		{"unknown peer key", iface + peerB + "endpiont = \"198.18.0.2:1\"\n", 10, `unknown key "endpiont" in [[peer]] #1`},
		{"unknown session key", iface + "[session]\nrekey = \"3s\"\n", 7, `unknown key "rekey" in [session]`},
		// A dotted key names a table only implicitly: its line is the key's.
		{"unknown dotted key", iface + "mtu = 1420\nsession.rekey_after = \"3s\"\n", 7, `unknown key "session" in [interface]`},
		{"unknown dotted peer key", iface + peerB + "\nfoo.bar.baz = 1\n", 11, `unknown key "foo" in [[peer]] #1`},
		{"dotted key where a duration belongs", iface + peerB + "persistent_keepalive.x = \"25s\"\n", 10, "persistent_keepalive must be a duration string"},
		{"misspelt array of tables at its header", iface + peerB + "[[peers]]\nid = \"c\"\n[[peers]]\nid = \"d\"\n", 10, `unknown key "peers" in the top level`},
		{"interface as array", `[[interface]]
name = "x"
`, 1, "interface must be a table written [interface]"},
		{"peer as single table", iface + "[peer]\nid = \"b\"\n", 6, "peer must be an array of tables"},
		{"missing interface", peerB, 1, "missing [interface] table"},
		{"missing name", `[interface]
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 1, "[interface] needs name"},
		{"missing peer_id", `[interface]
name = "st0"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 1, "[interface] needs peer_id"},
		{"neither private key", `[interface]
name = "st0"
peer_id = "a"
address = ["198.19.0.1/24"]
`, 1, "needs private_key_file (or private_key)"},
		{"both private keys", iface + "private_key_file = \"k\"\n", 6, "give private_key or private_key_file, not both"},
		{"missing address", `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
`, 1, "[interface] needs address"},
		{"name wrong type", `[interface]
name = 7
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 2, "name must be a string, not an integer"},
		{"name too long", `[interface]
name = "abcdefghijklmnop"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 2, "Linux interface names are at most 15"},
		{"name with slash", `[interface]
name = "st/0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 2, `must not contain '/'`},
		{"name with space", `[interface]
name = "st 0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 2, `must not contain ' '`},
		{"empty peer_id", `[interface]
name = "st0"
peer_id = ""
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`, 3, `peer_id "" must not be empty`},
		{"malformed private key", `[interface]
name = "st0"
peer_id = "a"
private_key = "bm90IGEga2V5"
address = ["198.19.0.1/24"]
`, 4, "private_key: key must be base64 of exactly 32 bytes"},
		{"address without length", `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1"]
`, 5, "needs a prefix length, e.g. 198.19.0.1/32"},
		{"address garbage", `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.300/24"]
`, 5, `address "198.19.0.300/24" is not an address with prefix length`},
		{"address is network address", `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.0/24"]
`, 5, "is the network address of 198.19.0.0/24"},
		{"address not an array", `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = "198.19.0.1/24"
`, 5, "address must be an array of strings"},
		{"listen_port out of range", iface + "listen_port = 70000\n", 6, "listen_port 70000 is out of range 0..65535"},
		{"listen_port wrong type", iface + "listen_port = \"51820\"\n", 6, "listen_port must be an integer, not a string"},
		{"mtu too small", iface + "mtu = 500\n", 6, "mtu 500 is out of range 576..65535"},
		{"mtu too large", iface + "mtu = 70000\n", 6, "mtu 70000 is out of range"},
		{"mtu below IPv6 minimum", `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24", "fd00:77::1/64"]
mtu = 1200
`, 6, "mtu 1200 is below 1280, the IPv6 minimum"},
		{"log level", iface + "log_level = \"loud\"\n", 6, `log_level "loud" is not one of debug, info, warn, error`},
		{"duration malformed", iface + "[session]\nrekey_after = \"2 minutes\"\n", 7, `rekey_after "2 minutes" is not a duration`},
		{"duration past what one holds", iface + "[session]\nreject_after = \"9999999h\"\n", 7, `reject_after "9999999h" is too long: a duration is at most 2562047h0m0s`},
		{"duration wrong type", iface + "[session]\nkeepalive = 25\n", 7, "keepalive must be a duration string"},
		{"duration negative", iface + "[session]\nkeepalive = \"-5s\"\n", 7, `keepalive "-5s" must not be negative`},
		{"reject_after <= rekey_after", iface + "[session]\nrekey_after = \"60s\"\nreject_after = \"60s\"\n", 8, "reject_after 1m0s must be longer than rekey_after 1m0s"},
		{"rekey_after beyond default reject_after", iface + "[session]\nrekey_after = \"10m\"\n", 7, "must be shorter than reject_after 3m0s"},
		{"replay window not power of two", iface + "[session]\nreplay_window = 1000\n", 7, "replay_window 1000 must be a power of two from 128"},
		{"replay window too small", iface + "[session]\nreplay_window = 64\n", 7, "replay_window 64 must be a power of two"},
		{"reject_after too short for a handshake", iface + "[session]\nrekey_after = \"100ms\"\nreject_after = \"200ms\"\n", 8, "reject_after 200ms must exceed"},
		{"reject_after past what the timers count", iface + "[session]\nreject_after = \"900000h\"\n", 7, "reject_after 900000h0m0s is longer than 640000h0m0s"},
		{"keepalive past what the timers count", iface + "[session]\nrekey_after = \"1s\"\nkeepalive = \"2562047h\"\n", 8, "keepalive 2562047h0m0s is longer than"},
		{"rekey_after_messages zero", iface + "[session]\nrekey_after_messages = 0\n", 7, "rekey_after_messages 0 must be greater than zero"},
		{"cipher", iface + "[session]\ncipher = \"rot13\"\n", 7, `cipher "rot13" is not one of`},
		{"peer missing id", iface + "[[peer]]\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 6, "[[peer]] #1 needs id"},
		{"peer empty id", iface + "[[peer]]\nid = \"\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 7, `id "" of [[peer]] #1 must not be empty`},
		{"peer id too long", iface + "[[peer]]\nid = \"" + strings.Repeat("x", 65) + "\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 7, "is 65 bytes; at most 64"},
		{"peer missing public key", iface + "[[peer]]\nid = \"b\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 6, `peer "b" needs public_key; get it on the peer with: sudo stunnel pubkey PEER.key`},
		{"peer malformed public key", iface + "[[peer]]\nid = \"b\"\npublic_key = \"abc\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 8, `public_key of peer "b": key must be base64 of exactly 32 bytes; get it on the peer with: sudo stunnel pubkey PEER.key`},
		{"peer missing allowed_ips", iface + "[[peer]]\nid = \"b\"\npublic_key = \"PUB_B\"\n", 6, `peer "b" needs allowed_ips`},
		{"allowed_ips host bits", iface + "[[peer]]\nid = \"b\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.5.7/24\"]\n", 9, `has host bits set; write 198.19.5.0/24`},
		{"allowed_ips v6 host bits", iface + "[[peer]]\nid = \"b\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"fd00:88::1/64\"]\n", 9, `write fd00:88::/64`},
		{"allowed_ips contains own address", iface + "[[peer]]\nid = \"b\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.0/24\"]\n", 9, "contains this host's own address 198.19.0.1"},
		{"duplicate peer id", iface + peerB + "[[peer]]\nid = \"b\"\npublic_key = \"PUB_C\"\nallowed_ips = [\"198.19.0.3/32\"]\n", 11, `peer id "b" is already used by the peer at line 6`},
		{"peer id is our own", iface + "[[peer]]\nid = \"a\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 7, `peer id "a" is this host's own peer_id`},
		{"duplicate public key", iface + peerB + "[[peer]]\nid = \"c\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.3/32\"]\n", 12, `public_key of peer "c" is also the key of peer "b" (line 6)`},
		{"own public key as peer", iface + "[[peer]]\nid = \"b\"\npublic_key = \"PUB_A\"\nallowed_ips = [\"198.19.0.2/32\"]\n", 8, "is this host's own public key"},
		{"overlapping allowed_ips", iface + peerB + "[[peer]]\nid = \"c\"\npublic_key = \"PUB_C\"\nallowed_ips = [\"198.19.0.2/31\"]\n", 13, `allowed_ips 198.19.0.2/31 of peer "c" overlaps 198.19.0.2/32 of peer "b" (line 6)`},
		{"endpoint no port", iface + peerB + "endpoint = \"198.18.0.2\"\n", 10, "must be host:port"},
		{"endpoint port zero", iface + peerB + "endpoint = \"198.18.0.2:0\"\n", 10, `port "0" must be a number from 1 to 65535`},
		{"endpoint port too big", iface + peerB + "endpoint = \"198.18.0.2:65536\"\n", 10, `port "65536" must be a number`},
		{"endpoint v6 without brackets", iface + peerB + "endpoint = \"fd00::2:51820\"\n", 10, "IPv6 addresses must be in brackets"},
		{"endpoint bad IPv4", iface + peerB + "endpoint = \"198.18.0.256:51820\"\n", 10, `host "198.18.0.256" is not a valid IPv4 address`},
		{"endpoint bad DNS name", iface + peerB + "endpoint = \"gw_bad!.example:51820\"\n", 10, "is not a valid IP address or DNS name"},
		{"endpoint inside tunnel", iface + peerB + "endpoint = \"198.19.0.2:51820\"\n", 10, "would be routed into the tunnel itself"},
		{"persistent_keepalive negative", iface + peerB + "persistent_keepalive = \"-1s\"\n", 10, `persistent_keepalive "-1s" must not be negative`},
		{"persistent_keepalive tiny", iface + peerB + "persistent_keepalive = \"10ms\"\n", 10, "below 1s and would flood"},
		{"both preshared keys", iface + peerB + "preshared_key = \"PSK\"\npreshared_key_file = \"x\"\n", 11, "give preshared_key or preshared_key_file, not both"},
		{"malformed preshared key", iface + peerB + "preshared_key = \"c2hvcnQ=\"\n", 10, `preshared key of peer "b" must be base64 of 32 non-zero bytes`},
		{"missing key file", `[interface]
name = "st0"
peer_id = "a"
private_key_file = "/nonexistent/stunnel-test.key"
address = ["198.19.0.1/24"]
`, 4, "cannot open /nonexistent/stunnel-test.key: no such file or directory"},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	secret := testKey(t, 1).Base64()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(expand(t, tc.src)))
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if c != nil {
				t.Error("returned a config along with errors")
			}
			want := fmt.Sprintf("test.toml:%d: ", tc.line)
			found := false
			for _, p := range problems(t, err) {
				if strings.HasPrefix(p.String(), want) && strings.Contains(p.Msg, tc.msg) {
					found = true
				}
				if strings.Contains(p.Msg, "\n") {
					t.Errorf("multi-line message: %q", p.Msg)
				}
			}
			if !found {
				t.Errorf("want a problem %q...%q, got:\n%v", want, tc.msg, err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), testKey(t, 4).Base64()) {
				t.Errorf("error reveals a secret key:\n%v", err)
			}
		})
	}
}

// A config with many mistakes reports every one of them, in line order.
func TestAllProblemsInOneRun(t *testing.T) {
	src := expand(t, `[interface]
name = "this-name-is-too-long"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
mtu = 100
colour = "blue"

[session]
replay_window = 100

[[peer]]
id = "b"
public_key = "PUB_B"
allowed_ips = ["198.19.0.9/24"]
endpoint = "nowhere"

[[peer]]
id = "b"
public_key = "PUB_C"
allowed_ips = ["198.19.7.0/24"]
`)
	_, err := Parse("many.toml", []byte(src))
	got := problems(t, err)
	wantLines := []int{2, 6, 7, 10, 15, 16, 19}
	if len(got) != len(wantLines) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(wantLines), err)
	}
	for i, p := range got {
		if p.Line != wantLines[i] || p.File != "many.toml" {
			t.Errorf("problem %d at %s:%d, want line %d: %s", i, p.File, p.Line, wantLines[i], p.Msg)
		}
	}
}

// A file saved by an editor that writes a UTF-8 byte order mark (Windows
// Notepad, with CRLF line ends) parses, and its problems keep their lines:
// the mark before the first header must not hide that header from the line
// scan, which would put every key of the first table on line 1.
func TestByteOrderMarkKeepsLines(t *testing.T) {
	for _, nl := range []string{"\n", "\r\n"} {
		src := "\ufeff" + strings.ReplaceAll(expand(t, iface+"mtu = 5\n[session]\ncipher = \"x\"\n"), "\n", nl)
		_, err := Parse("bom.toml", []byte(src))
		if err == nil {
			t.Fatalf("%q line ends: accepted", nl)
		}
		probs := problems(t, err)
		if len(probs) != 2 || probs[0].Line != 6 || !strings.Contains(probs[0].Msg, "mtu 5") || probs[1].Line != 8 {
			t.Fatalf("%q line ends: problems %v; want mtu at line 6 and cipher at line 8", nl, probs)
		}
	}
}

// Every problem is one line, FILE:LINE: message, which scripts split on
// newlines: a value written with a TOML escape ("\n") is quoted into the
// message as it is (a file name, a group), so it must not end the line,
// nor start a forged "FILE:LINE:" of its own.
func TestProblemsStayOneLine(t *testing.T) {
	src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\n" +
		`private_key_file = "a\nforged.toml:1: all is well"` + "\naddress = [\"198.19.0.1/24\"]\n" +
		"[tickets]\n" + `key_file = "k\rz"` + "\n[control]\n" + `read_group = "g` + "\\u0085" + `x"` + "\n"
	_, err := Parse("/etc/stunnel/a\tb.toml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(problems(t, err)) {
		t.Fatalf("%d problems printed on %d lines:\n%s", len(problems(t, err)), len(lines), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `/etc/stunnel/a\tb.toml:`) || strings.ContainsAny(l, "\r\t\u0085") {
			t.Errorf("problem line %q: want FILE:LINE: message with control characters escaped", l)
		}
	}
}

// A table header left open is reported on its own line, not the next one
// (past the end of the file when it is the last line), with or without a
// byte order mark before it.
func TestOpenTableHeaderLine(t *testing.T) {
	for _, c := range []struct {
		src  string
		line int
	}{
		{"[interface\nname = \"st0\"\n", 1},
		{"[interface]\nname = \"st0\"\n[session\n", 3},
		{"\ufeff[interface]\nname = \"st0\"\n[session\n", 3},
		{"[interface]\r\nname = \"st0\"\r\n[[peer\r\n", 3},
		{"[interface]\nname =\npeer_id = \"a\"\n", 2},
		{"[interface]\nname = \"st0\"\n[session", 3},
		// One closing bracket short: the parser's span is "]\n".
		{"[interface]\nname = \"st0\"\n[[peer]\nid = \"b\"\n", 3},
		{"[interface]\nname = \"st0\"\n[[peer]\n", 3},
		{"\ufeff[interface]\nname = \"st0\"\n[[peer]\nid = \"b\"\n", 3},
	} {
		_, err := Parse("st.toml", []byte(c.src))
		if err == nil {
			t.Fatalf("%q: accepted", c.src)
		}
		if ps := problems(t, err); len(ps) != 1 || ps[0].Line != c.line || !strings.Contains(ps[0].Msg, "TOML syntax") {
			t.Errorf("%q: got %v; want a TOML syntax error at line %d", c.src, err, c.line)
		}
	}
}
