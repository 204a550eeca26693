// Package softhsmtest makes a SoftHSM2 token in a test's temporary
// directory, for the tests of token keys. Without SoftHSM2 installed the
// test skips loudly, and with STUNNEL_REQUIRE_SOFTHSM=1 or CI's
// STUNNEL_REQUIRE_NETNS=1 (CI installs SoftHSM2) it fails instead.
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Module is where Debian's softhsm2 package puts the module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of every test token.
const PIN = "4711-stunnel"

// Token is one initialized SoftHSM2 token whose store lives in a temporary directory.
type Token struct {
	Label   string
	Conf    string // the SOFTHSM2_CONF file
	PinFile string // holds PIN, mode 0600
	Dir     string
}

// New makes a token labelled label, sets SOFTHSM2_CONF for this process
// (t.Setenv: not for parallel tests) and returns it.
func New(t testing.TB, label string) *Token {
	t.Helper()
	_, errMod := os.Stat(Module)
	_, errUtil := exec.LookPath("softhsm2-util")
	if errMod != nil || errUtil != nil {
		if os.Getenv("STUNNEL_REQUIRE_SOFTHSM") == "1" || os.Getenv("STUNNEL_REQUIRE_NETNS") == "1" {
			t.Fatalf("STUNNEL_REQUIRE_SOFTHSM=1 or STUNNEL_REQUIRE_NETNS=1 but SoftHSM2 is not installed (%s, softhsm2-util); apt-get install softhsm2", Module)
		}
		t.Skipf("SKIPPING: needs SoftHSM2 (apt-get install softhsm2); STUNNEL_REQUIRE_SOFTHSM=1 makes this a failure")
	}
	dir := t.TempDir()
	tok := &Token{Label: label, Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"), PinFile: filepath.Join(dir, "pin")}
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(dir, "tokens"))
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok.PinFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	tok.AddToken(t, label)
	return tok
}

// AddToken initializes one more token in tok's store (New's first one
// included), labelled label, with the same PINs. With tok's own label it
// makes two tokens that a URI cannot tell apart by token= alone.
func (tok *Token) AddToken(t testing.TB, label string) {
	t.Helper()
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "5678-so")
	cmd.Env = tok.Env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
}

// Env is the environment for a child process that uses the token.
func (tok *Token) Env() []string { return append(os.Environ(), "SOFTHSM2_CONF="+tok.Conf) }

// URI is a pkcs11: URI of object in this token, with the module and the PIN file.
func (tok *Token) URI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-source=file:%s", tok.Label, object, Module, tok.PinFile)
}
