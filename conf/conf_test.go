package conf

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"stunnel/handshake"
)

// Deterministic keys so tests need no randomness.
func testKey(t testing.TB, fill byte) handshake.PrivateKey {
	t.Helper()
	k, err := handshake.GeneratePrivateKey(bytes.NewReader(bytes.Repeat([]byte{fill}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// expand replaces PRIV_A, PUB_A, PUB_B, PUB_C, PSK in a config template.
func expand(t testing.TB, s string) string {
	a, b, c := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	return strings.NewReplacer(
		"PRIV_A", a.Base64(),
		"PUB_A", a.PublicKey().String(),
		"PUB_B", b.PublicKey().String(),
		"PUB_C", c.PublicKey().String(),
		"PSK", testKey(t, 4).Base64(),
	).Replace(s)
}

func problems(t *testing.T, err error) Errors {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T (%v), want *Errors", err, err)
	}
	return *errs
}

const validFull = `# a full config: every key set
[interface]
name = "st7"
peer_id = "site-a"
private_key_file = "a.key"
listen_port = 51999
address = ["198.19.1.1/24", "fd00:77::1/64"]
mtu = 1380
log_level = "debug"

[session]
rekey_after = "100s"
reject_after = "3m"
rekey_after_messages = 1000000
replay_window = 4096
keepalive = "15s"
cipher = "aes256gcm"

[[peer]]
id = "site-b"
public_key = "PUB_B"
preshared_key = "PSK"
endpoint = "198.18.0.2:51820"
allowed_ips = [
  "198.19.1.2/32",
  "198.19.20.0/24",   # site B's LAN
  "fd00:77::2/128",
]
persistent_keepalive = "25s"

[[peer]]
id = "roamer"
public_key = "PUB_C"
preshared_key_file = "/ABS/c.psk"
endpoint = "gw.example.net:4000"
allowed_ips = ["198.19.1.3/32"]
`

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

func TestValidFullConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.key"), testKey(t, 1).Base64()+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "c.psk"), testKey(t, 5).Base64()+"\n", 0o400)
	path := filepath.Join(dir, "st7.toml")
	writeFile(t, path, strings.ReplaceAll(expand(t, validFull), "/ABS", dir), 0o600) // inline keys: only we may read it

	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	in := c.Interface
	if c.Path != path || in.Name != "st7" || in.PeerID != "site-a" || in.ListenPort != 51999 || in.MTU != 1380 || in.LogLevel != slog.LevelDebug {
		t.Errorf("interface = %+v", in)
	}
	if in.PrivateKey != testKey(t, 1) || !in.PublicKey.Equal(testKey(t, 1).PublicKey()) {
		t.Error("private key not read from a.key, or public key not derived")
	}
	wantAddr := []netip.Prefix{netip.MustParsePrefix("198.19.1.1/24"), netip.MustParsePrefix("fd00:77::1/64")}
	if !equalPrefixes(in.Addresses, wantAddr) {
		t.Errorf("addresses = %v, want %v", in.Addresses, wantAddr)
	}
	wantSession := Session{RekeyAfter: 100 * time.Second, RejectAfter: 3 * time.Minute, RekeyAfterMessages: 1000000,
		ReplayWindow: 4096, Keepalive: 15 * time.Second, Cipher: handshake.PreferAES256GCM}
	if c.Session != wantSession {
		t.Errorf("session = %+v, want %+v", c.Session, wantSession)
	}
	if len(c.Peers) != 2 {
		t.Fatalf("got %d peers, want 2", len(c.Peers))
	}
	b, r := c.Peers[0], c.Peers[1]
	if b.ID != "site-b" || !b.PublicKey.Equal(testKey(t, 2).PublicKey()) || b.Endpoint != "198.18.0.2:51820" ||
		b.PersistentKeepalive != 25*time.Second || b.Line != 19 {
		t.Errorf("peer 0 = %+v", b)
	}
	if b.PresharedKey != handshake.PresharedKey(testKey(t, 4)) {
		t.Error("inline preshared_key not read")
	}
	wantB := []netip.Prefix{netip.MustParsePrefix("198.19.1.2/32"), netip.MustParsePrefix("198.19.20.0/24"), netip.MustParsePrefix("fd00:77::2/128")}
	if !equalPrefixes(b.AllowedIPs, wantB) {
		t.Errorf("allowed_ips = %v, want %v", b.AllowedIPs, wantB)
	}
	if r.ID != "roamer" || r.Endpoint != "gw.example.net:4000" || r.Line != 31 || r.PersistentKeepalive != 0 {
		t.Errorf("peer 1 = %+v", r)
	}
	if r.PresharedKey != handshake.PresharedKey(testKey(t, 5)) {
		t.Error("preshared_key_file not read")
	}
}

func TestDefaults(t *testing.T) {
	src := expand(t, `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`)
	c, err := Parse("min.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Session{RekeyAfter: 120 * time.Second, RejectAfter: 180 * time.Second, RekeyAfterMessages: 1 << 60,
		ReplayWindow: 8192, Keepalive: 0, Cipher: handshake.CipherAuto}
	if c.Session != want {
		t.Errorf("session = %+v, want %+v", c.Session, want)
	}
	if c.Interface.ListenPort != 51820 || c.Interface.MTU != 1420 || c.Interface.LogLevel != slog.LevelInfo || len(c.Peers) != 0 {
		t.Errorf("interface defaults = %+v, peers %d", c.Interface, len(c.Peers))
	}
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A default-route peer (send everything to it) is allowed; it contains our
// own address on purpose.
func TestDefaultRoutePeer(t *testing.T) {
	src := expand(t, iface+`[[peer]]
id = "gw"
public_key = "PUB_B"
endpoint = "gw.example.net:51820"
allowed_ips = ["0.0.0.0/0", "::/0"]
`)
	c, err := Parse("full.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Peers) != 1 || len(c.Peers[0].AllowedIPs) != 2 {
		t.Errorf("peers = %+v", c.Peers)
	}
}

// A config path that names a device, a socket or something too large to be
// a config is one FILE:1 problem, read no further: `-c /dev/zero` used to
// read until memory ran out.
func TestLoadRefusesWhatIsNoConfigFile(t *testing.T) {
	old := maxConfigSize
	maxConfigSize = 1 << 10
	defer func() { maxConfigSize = old }()
	big := filepath.Join(t.TempDir(), "big.toml")
	writeFile(t, big, "# "+strings.Repeat("x", 2<<10)+"\n", 0o600)
	sock := filepath.Join(t.TempDir(), "s.toml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for path, want := range map[string]string{
		"/dev/null": "cannot read config: it is a character device, not a config file",
		sock:        "cannot read config: it is a socket, not a config file",
		big:         "more than the 1024 a config may hold",
	} {
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s: accepted", path)
			continue
		}
		if ps := problems(t, err); len(ps) != 1 || ps[0].Line != 1 || ps[0].File != path || !strings.Contains(ps[0].Msg, want) {
			t.Errorf("%s: got %v; want one problem at line 1 with %q", path, err, want)
		}
	}
}

// Peer.Equal compares every field: a peer that differs from another in
// one field only, a key's last byte included, is not equal to it. A field
// added to Peer and not to Equal fails here.
func TestPeerEqualEveryField(t *testing.T) {
	base := Peer{ID: "b", PublicKey: testKey(t, 2).PublicKey(), PresharedKey: handshake.PresharedKey{4, 4, 4},
		Endpoint: "198.18.0.2:51820", Endpoints: []string{"198.18.0.2:51820"}, FailoverAfter: time.Second,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32")}, PersistentKeepalive: 25 * time.Second, Line: 7}
	clone := func(p Peer) Peer {
		p.Endpoints, p.AllowedIPs = slices.Clone(p.Endpoints), slices.Clone(p.AllowedIPs)
		return p
	}
	if q := clone(base); !base.Equal(q) || !q.Equal(base) {
		t.Fatal("a peer is not equal to its copy")
	}
	typ := reflect.TypeFor[Peer]()
	for i := range typ.NumField() {
		q := clone(base)
		f := reflect.ValueOf(&q).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Array: // a key: its last byte
			last := f.Index(f.Len() - 1)
			last.SetUint(last.Uint() ^ 1)
		case reflect.Slice:
			f.Set(reflect.Append(f, reflect.Zero(f.Type().Elem())))
		case reflect.Int, reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		default:
			t.Fatalf("Peer.%s: a field of kind %s; teach this test to change it", typ.Field(i).Name, f.Kind())
		}
		if base.Equal(q) || q.Equal(base) {
			t.Errorf("peers that differ in %s are Equal", typ.Field(i).Name)
		}
	}
}
