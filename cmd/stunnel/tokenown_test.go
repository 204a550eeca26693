//go:build cgo

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/softhsmtest"
	"stunnel/pkcs11key"
	"stunnel/tunnel"
	"stunnel/tunnel/udpbind"
)

// TestTokenOwnKeyPeerRefusedAfterStart: with a token key, a peer that has
// the token key's public key is refused by a reload (one line, running
// configuration kept) and skipped as a directory record (one line), as up
// refuses it at start (TestPKCS11CheckAndUpFailures). conf cannot see it in
// the file: the token's public key is known only once the token is open.
func TestTokenOwnKeyPeerRefusedAfterStart(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	u, err := pkcs11key.ParseURI(tok.URI("site-a"))
	if err != nil {
		t.Fatal(err)
	}
	own, err := pkcs11key.Generate(u, "")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := handshake.GeneratePrivateKey(nil)
	path := filepath.Join(t.TempDir(), "st8.toml")
	head := fmt.Sprintf("[interface]\nname = \"st8\"\npeer_id = \"a\"\nprivate_key = %q\naddress = [\"198.19.0.1/24\"]\nlisten_port = 0\n", tok.URI("site-a"))
	peer := func(id string, key handshake.PublicKey, ip string) string {
		return fmt.Sprintf("\n[[peer]]\nid = %q\npublic_key = %q\nallowed_ips = [%q]\n", id, key, ip)
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(head + peer("b", other.PublicKey(), "198.19.0.2/32"))
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	key, closeKey, err := openStaticKey(cfg, nil, func(line string) { t.Error(line) }) // as up does
	if err != nil {
		t.Fatal(err)
	}
	defer closeKey()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	bind := udpbind.New()
	d, err := tunnel.New(cfg, tunnel.Options{TUN: newChanTUN(), Bind: bind, Logger: log, StaticKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	// Reload: the file's [[peer]] "mirror" has the token's key.
	before := head + peer("b", other.PublicKey(), "198.19.0.2/32") + "\n"
	write(before + peer("mirror", own, "198.19.0.9/32")[1:])
	// No kernel device here (link nil): reload changes the device only.
	got, rerr := reload(cfg, d, nil, bind, &endpointResolver{}, log, new(slog.LevelVar), nil)
	want := fmt.Sprintf(`%s:%d: public_key of peer "mirror" is this host's own public key`, path, strings.Count(before, "\n")+1)
	if rerr == nil || !strings.Contains(rerr.Error(), want) || strings.Contains(rerr.Error(), "\n") {
		t.Errorf("reload with a peer that has the token key's public key: %v; want one line with %q", rerr, want)
	}
	if got != cfg {
		t.Errorf("reload refused, but did not return the running configuration")
	}
	if ids := devicePeerIDs(d); !slices.Equal(ids, []string{"b"}) {
		t.Errorf("device runs peers %v after the refused reload, want [b]", ids)
	}

	// Directory: a record with the token's key is skipped, the others used.
	s := &dirSync{log: log, file: cfg, reported: map[string]bool{}, dev: d}
	ip := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	s.onChange([]conf.Peer{{ID: "dirmirror", PublicKey: own, AllowedIPs: ip("198.19.0.10/32")}, attachTestPeer("c", "198.19.0.11/32")})
	if ids := devicePeerIDs(d); !slices.Equal(ids, []string{"b", "c"}) {
		t.Errorf("device runs peers %v after the directory change, want [b c] (dirmirror skipped, c used)", ids)
	}
	const skipped = `directory peer \"dirmirror\" has this host's own public key (skipped)`
	if n := strings.Count(logs.String(), skipped); n != 1 {
		t.Errorf("the skipped record is logged %d times, want once:\n%s", n, logs.String())
	}
}
