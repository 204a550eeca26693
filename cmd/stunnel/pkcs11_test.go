//go:build cgo

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/softhsmtest"
)

func TestPKCS11GenkeyPubkey(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	uri := tok.URI("site-a")
	out, stderr, code := runStunnel(t, "", "genkey", "--pkcs11", uri)
	if code != 0 || stderr != "" {
		t.Fatalf("genkey --pkcs11: exit %d, stderr %q", code, stderr)
	}
	pub, err := handshake.ParsePublicKey(strings.TrimSpace(out))
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("genkey --pkcs11 printed %q, want one public key line", out)
	}
	out2, stderr, code := runStunnel(t, "", "pubkey", "--pkcs11", uri)
	if code != 0 || strings.TrimSpace(out2) != pub.String() {
		t.Fatalf("pubkey --pkcs11: exit %d, %q (stderr %q), want %s", code, out2, stderr, pub)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"genkey", "--pkcs11", uri}, `already has a key "site-a"`},
		{[]string{"pubkey", "--pkcs11", tok.URI("nope")}, `no private key "nope"`},
		{[]string{"pubkey", "--pkcs11", "pkcs11:object=x"}, "names no token"},
	} {
		out, stderr, code := runStunnel(t, "", c.args...)
		if code != 2 || out != "" || !strings.Contains(stderr, c.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", c.args, code, out, stderr, c.msg)
		}
	}
}

// TestPKCS11CheckAndUpFailures: each way a token key cannot be used makes
// check and up exit 2 with one FILE:LINE line saying which.
func TestPKCS11CheckAndUpFailures(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	if _, stderr, code := runStunnel(t, "", "genkey", "--pkcs11", tok.URI("site-a")); code != 0 {
		t.Fatalf("genkey --pkcs11: exit %d: %s", code, stderr)
	}
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongPIN := write("wrong-pin", "0000\n", 0o600)
	openPIN := write("open-pin", softhsmtest.PIN+"\n", 0o644)
	notAModule := write("not-a-module.so", "just text", 0o644)
	config := func(name, key string, extra ...string) string {
		return write(name, fmt.Sprintf("[interface]\nname = \"st9\"\npeer_id = \"a\"\nprivate_key = %q\n%saddress = [\"198.19.0.1/24\"]\n",
			key, strings.Join(extra, "")), 0o600)
	}
	plain := func(object string) string {
		return fmt.Sprintf("pkcs11:token=gw;object=%s?module-path=%s", object, softhsmtest.Module)
	}

	good := config("good.toml", tok.URI("site-a"))
	if out, stderr, code := runStunnel(t, "", "check", "-c", good); code != 0 {
		t.Fatalf("check of a good token config: exit %d, %q %q", code, out, stderr)
	}
	pub, _, _ := runStunnel(t, "", "pubkey", "--pkcs11", tok.URI("site-a"))
	self := write("self.toml", fmt.Sprintf("[interface]\nname = \"st9\"\npeer_id = \"a\"\nprivate_key = %q\naddress = [\"198.19.0.1/24\"]\n\n[[peer]]\nid = \"b\"\npublic_key = %q\nallowed_ips = [\"198.19.0.2/32\"]\n",
		tok.URI("site-a"), strings.TrimSpace(pub)), 0o600)
	for _, cmd := range []string{"check", "up"} {
		if _, stderr, code := runStunnel(t, "", cmd, "-c", self); code != 2 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, self+":7: public_key of peer \"b\" is this host's own") {
			t.Errorf("%s with a peer that has the token key's public key: exit %d, %q", cmd, code, stderr)
		}
	}
	cases := []struct {
		name, path string
		line       int
		msg        string
		up         bool // also run up: it must fail the same way before touching the system
	}{
		{"wrong PIN", config("pin.toml", plain("site-a"), fmt.Sprintf("pkcs11_pin_file = %q\n", wrongPIN)), 4, "private_key: wrong PIN for token \"gw\"", true},
		{"missing object", config("obj.toml", tok.URI("site-b")), 4, `private_key: token "gw" has no private key "site-b"`, true},
		{"missing token", config("tok.toml", strings.Replace(tok.URI("site-a"), "token=gw", "token=gone", 1)), 4, `private_key: no token "gone"`, true},
		{"missing module", config("mod.toml", strings.Replace(tok.URI("site-a"), softhsmtest.Module, "/nonexistent/p11.so", 1)), 4, "module /nonexistent/p11.so: no such file", true},
		{"module fails to load", config("load.toml", strings.Replace(tok.URI("site-a"), softhsmtest.Module, notAModule, 1)), 4, "does not load", true},
		{"PIN file readable by others", config("open.toml", plain("site-a"), fmt.Sprintf("pkcs11_pin_file = %q\n", openPIN)), 5, "readable by group or others", false},
		{"URI does not parse", config("uri.toml", "pkcs11:token=gw?module-path=/x"), 4, "names no key", false},
	}
	for _, c := range cases {
		cmds := [][]string{{"check", "-c", c.path}}
		if c.up {
			cmds = append(cmds, []string{"up", "-c", c.path})
		}
		for _, args := range cmds {
			out, stderr, code := runStunnel(t, "", args...)
			want := fmt.Sprintf("%s:%d: ", c.path, c.line)
			// A token not there (yet) is up's runtime failure, which
			// the unit restarts; a wrong PIN never is (tokenOpenExit).
			wantCode := 2
			if c.name == "missing token" && args[0] == "up" {
				wantCode = 1
			}
			if code != wantCode || out != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, c.msg) {
				t.Errorf("%s: %v: exit %d, stderr %q; want exit %d and one line %q...%q", c.name, args[0], code, stderr, wantCode, want, c.msg)
			}
			if strings.Contains(stderr, softhsmtest.PIN) {
				t.Errorf("%s: the PIN shows: %q", c.name, stderr)
			}
		}
	}
}

// writeTokenConfig writes dir/name, an [interface] whose private_key is
// the token key keyURI, with extra (whole lines) before its address, and
// returns its path.
func writeTokenConfig(t *testing.T, dir, name, keyURI, extra string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	text := fmt.Sprintf("[interface]\nname = \"st9\"\npeer_id = \"a\"\nprivate_key = %q\n%saddress = [\"198.19.0.1/24\"]\n", keyURI, extra)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenWithImportedKey makes a token "gw" holding a key generated in it,
// "site-a", and one imported into it, "imported", whose private key it
// returns.
func tokenWithImportedKey(t *testing.T) (*softhsmtest.Token, handshake.PrivateKey) {
	t.Helper()
	tok := softhsmtest.New(t, "gw")
	if _, stderr, code := runStunnel(t, "", "genkey", "--pkcs11", tok.URI("site-a")); code != 0 {
		t.Fatalf("genkey --pkcs11: exit %d: %s", code, stderr)
	}
	priv, _ := handshake.GeneratePrivateKey(nil)
	tok.ImportX25519(t, "imported", priv)
	return tok, priv
}

// TestPKCS11ImportedKeyWarning: check and pubkey --pkcs11 say in one line
// that a key imported into the token (sealed there now) may have a copy
// outside it, and go on; a key generated in the token gets no such line.
func TestPKCS11ImportedKeyWarning(t *testing.T) {
	tok, priv := tokenWithImportedKey(t)
	dir := t.TempDir()
	config := func(object string) string { return writeTokenConfig(t, dir, object+".toml", tok.URI(object), "") }
	if _, stderr, code := runStunnel(t, "", "check", "-c", config("site-a")); code != 0 || stderr != "" {
		t.Fatalf("check with a generated key: exit %d, stderr %q; want exit 0 and nothing on stderr", code, stderr)
	}
	if _, stderr, code := runStunnel(t, "", "pubkey", "--pkcs11", tok.URI("site-a")); code != 0 || stderr != "" {
		t.Fatalf("pubkey --pkcs11 of a generated key: exit %d, stderr %q; want exit 0 and nothing on stderr", code, stderr)
	}
	const why = `token "gw": key "imported": it was imported into the token (CKA_LOCAL false), so a copy of it may exist outside the token`
	path := config("imported")
	_, stderr, code := runStunnel(t, "", "check", "-c", path)
	if want := path + ":4: warning: private_key: " + why; code != 0 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, want) {
		t.Fatalf("check with an imported key: exit %d, stderr %q; want exit 0 and one line %q...", code, stderr, want)
	}
	out, stderr, code := runStunnel(t, "", "pubkey", "--pkcs11", tok.URI("imported"))
	if code != 0 || strings.TrimSpace(out) != priv.PublicKey().String() || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, why) {
		t.Fatalf("pubkey --pkcs11 of an imported key: exit %d, stdout %q, stderr %q; want its public key and one warning line", code, out, stderr)
	}
}

// TestPKCS11RequireLocal: with pkcs11_require_local = true, check (and up)
// refuse a key imported into the token (exit 2, one FILE:LINE line) and
// take a generated one; a reload may not change the setting.
func TestPKCS11RequireLocal(t *testing.T) {
	tok, priv := tokenWithImportedKey(t)
	dir := t.TempDir()
	config := func(name, object, extra string) string { return writeTokenConfig(t, dir, name, tok.URI(object), extra) }
	const require = "pkcs11_require_local = true\n"
	if _, stderr, code := runStunnel(t, "", "check", "-c", config("gen.toml", "site-a", require)); code != 0 || stderr != "" {
		t.Fatalf("check of a generated key with pkcs11_require_local: exit %d, stderr %q; want exit 0, nothing on stderr", code, stderr)
	}
	// Only check: up opens the key through the same openStaticKey, and
	// if that took the key, up would bring a tunnel up and run.
	path := config("imp.toml", "imported", require)
	out, stderr, code := runStunnel(t, "", "check", "-c", path)
	want := path + `:4: private_key: token "gw": key "imported": it was imported into the token (CKA_LOCAL false)`
	if code != 2 || out != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, want) ||
		!strings.Contains(stderr, "(refused: pkcs11_require_local = true, line 5)") {
		t.Errorf("check of an imported key with pkcs11_require_local: exit %d, stderr %q; want exit 2 and one line %q...", code, stderr, want)
	}

	// A reload that turns it on or off is refused; one that keeps it is not.
	load := func(p string) *conf.Config {
		t.Helper()
		c, err := conf.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		c.Interface.PublicKey = priv.PublicKey() // as openStaticKey leaves the running one
		return c
	}
	off, on := load(config("off.toml", "site-a", "")), load(config("on.toml", "site-a", require))
	for _, c := range []struct {
		running, file *conf.Config
		want          string
	}{
		{off, on, on.Path + ":5: pkcs11_require_local: reload cannot change it on a running tunnel (it is false); restart it"},
		{on, off, off.Path + ":4: pkcs11_require_local: reload cannot change it on a running tunnel (it is true); restart it"},
		{on, load(on.Path), ""},
	} {
		err := reloadTokenPublicKey(c.file, c.running)
		if (c.want == "") != (err == nil) || (err != nil && err.Error() != c.want) {
			t.Errorf("reload from %s to %s: %v, want %q", c.running.Path, c.file.Path, err, c.want)
		}
	}
}

// TestPKCS11PublicObjectKeyRefused: a key imported into the token as a
// public object (CKA_PRIVATE false: usable without the PIN), though sealed
// there, is refused by check and pubkey --pkcs11: exit 2, one line naming
// the key's URI and the attribute, no PIN. up is not run: it opens the key
// through the same openStaticKey, and if that took the key, up would bring
// a tunnel up on this host; its exit code is tokenOpenExit's, checked here.
func TestPKCS11PublicObjectKeyRefused(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	priv, _ := handshake.GeneratePrivateKey(nil)
	tmpl := softhsmtest.ImportedX25519("public", priv, true)
	for _, a := range tmpl {
		if a.Type == pkcs11.CKA_PRIVATE {
			a.Value = []byte{0}
		}
	}
	tok.Create(t, tmpl)
	path := writeTokenConfig(t, t.TempDir(), "public.toml", tok.URI("public"), "")
	keyURI := fmt.Sprintf("pkcs11:token=gw;object=public?module-path=%s", softhsmtest.Module)
	why := "key " + keyURI + " is a public object (CKA_PRIVATE false)"
	for _, c := range []struct {
		args   []string
		prefix string
	}{
		{[]string{"check", "-c", path}, path + ":4: private_key: " + why},
		{[]string{"pubkey", "--pkcs11", tok.URI("public")}, "stunnel pubkey: " + why},
	} {
		out, stderr, code := runStunnel(t, "", c.args...)
		if code != 2 || out != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, c.prefix) || strings.Contains(stderr, softhsmtest.PIN) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line %q...", c.args[0], code, out, stderr, c.prefix)
		}
	}
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, closeKey, err := openStaticKey(cfg, nil, func(string) {})
	closeKey()
	if err == nil || tokenOpenExit(err) != exitBadConfig {
		t.Errorf("up would open the key (%v) or exit %d on it, want exit %d", err, tokenOpenExit(err), exitBadConfig)
	}
}

// TestPKCS11SeveralTokensMatch: with two tokens labelled alike, a URI with
// only token= is a configuration error for every command that takes it:
// genkey --pkcs11, pubkey --pkcs11, check and up all exit 2 (up does not
// exit 1: a restart would find both again) with one line that says how
// many matched and the serial= of each. With serial= added all of them
// work.
func TestPKCS11SeveralTokensMatch(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	tok.AddToken(t, "gw")
	serials := tok.Serials(t, "gw")
	if len(serials) != 2 {
		t.Fatalf("serials of the tokens labelled gw: %q, want two", serials)
	}
	dir := t.TempDir()
	uri := tok.URI("site-a")
	path := writeTokenConfig(t, dir, "both.toml", uri, "")
	why := `2 tokens match token "gw" in module ` + softhsmtest.Module + ": say which in the pkcs11: URI with serial= (serial=" + serials[0] + ", serial=" + serials[1] + ")"
	for _, c := range []struct {
		args   []string
		prefix string
	}{
		{[]string{"genkey", "--pkcs11", uri}, "stunnel genkey: "},
		{[]string{"pubkey", "--pkcs11", uri}, "stunnel pubkey: "},
		{[]string{"check", "-c", path}, path + ":4: private_key: "},
		{[]string{"up", "-c", path}, path + ":4: private_key: "},
	} {
		out, stderr, code := runStunnel(t, "", c.args...)
		if code != 2 || out != "" || stderr != c.prefix+why+"\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and the one line %q", c.args[0], code, out, stderr, c.prefix+why)
		}
	}
	one := strings.Replace(uri, "token=gw", "token=gw;serial="+serials[1], 1)
	pub, stderr, code := runStunnel(t, "", "genkey", "--pkcs11", one)
	if code != 0 {
		t.Fatalf("genkey --pkcs11 with serial=: exit %d, %q", code, stderr)
	}
	if out, stderr, code := runStunnel(t, "", "pubkey", "--pkcs11", one); code != 0 || out != pub {
		t.Errorf("pubkey --pkcs11 with serial=: exit %d, %q (stderr %q), want %q", code, out, stderr, pub)
	}
	if out, stderr, code := runStunnel(t, "", "check", "-c", writeTokenConfig(t, dir, "one.toml", one, "")); code != 0 {
		t.Errorf("check with serial=: exit %d, %q %q", code, out, stderr)
	}
}
