package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"stunnel/handshake"
	"stunnel/pkcs11key"
)

func TestVersion(t *testing.T) {
	stdout, stderr, code := runStunnel(t, "", "version")
	if code != 0 || stderr != "" {
		t.Fatalf("version: exit %d, stderr %q", code, stderr)
	}
	// pkcs11 says whether this very build opens tokens: a bug report
	// that quotes it must not send anyone looking for a missing feature.
	pkcs11 := `(?m)^pkcs11: no$`
	if pkcs11key.Supported {
		pkcs11 = `(?m)^pkcs11: yes$`
	}
	for _, re := range []string{`(?m)^stunnel \S+$`, `(?m)^go: go\S+$`, pkcs11} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("version output lacks %s:\n%s", re, stdout)
		}
	}
	if _, _, code := runStunnel(t, "", "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// Every subcommand's -h/--help prints its usage and exits 0; a wrong flag
// still exits 2.
func TestHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"up", "check", "pubkey", "genkey", "version"} {
		for _, h := range []string{"-h", "--help"} {
			_, stderr, code := runStunnel(t, "", cmd, h)
			if code != 0 || !strings.Contains(stderr, "usage: stunnel "+cmd) {
				t.Errorf("%s %s: exit %d, stderr %q", cmd, h, code, stderr)
			}
		}
	}
	// The commands with subcommands take -h and --help (and help) as their
	// first word, and print their usage.
	for _, cmd := range []string{"tickets", "directory", "state"} {
		for _, h := range []string{"-h", "--help", "help"} {
			stdout, stderr, code := runStunnel(t, "", cmd, h)
			if code != 0 || !strings.Contains(stdout+stderr, "stunnel "+cmd) {
				t.Errorf("%s %s: exit %d, want 0 and its usage; stdout %q, stderr %q", cmd, h, code, stdout, stderr)
			}
		}
	}
	// The command list says pubkey takes a file, as README's quick start
	// uses it (`sudo stunnel pubkey /etc/stunnel/alpha.key`).
	if _, stderr, code := runStunnel(t, "", "help"); code != 0 || !strings.Contains(stderr, "stunnel pubkey [FILE]") {
		t.Errorf("help: exit %d, does not list `stunnel pubkey [FILE]`:\n%s", code, stderr)
	}
	if _, stderr, code := runStunnel(t, "", "up", "--bogus"); code != 2 || stderr == "" {
		t.Errorf("up --bogus: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runStunnel(t, "", "up"); code != 2 || !strings.Contains(stderr, "stunnel up -c FILE") {
		t.Errorf("up without -c: exit %d, stderr %q", code, stderr)
	}
}

// `sudo stunnel pubkey FILE` works where `sudo stunnel pubkey < FILE` cannot
// (the redirect runs in the caller's shell).
func TestPubkeyFileArgument(t *testing.T) {
	priv := mustGenkey(t)
	path := filepath.Join(t.TempDir(), "a.key")
	if err := os.WriteFile(path, []byte(priv), 0o600); err != nil {
		t.Fatal(err)
	}
	fromStdin, _, code := runStunnel(t, priv, "pubkey")
	if code != 0 {
		t.Fatalf("pubkey < key: exit %d", code)
	}
	fromFile, stderr, code := runStunnel(t, "", "pubkey", path)
	if code != 0 || fromFile != fromStdin {
		t.Fatalf("pubkey FILE: exit %d, %q, want %q (stderr %q)", code, fromFile, fromStdin, stderr)
	}
	_, stderr, code = runStunnel(t, "", "pubkey", filepath.Join(t.TempDir(), "missing.key"))
	if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "missing.key") {
		t.Errorf("pubkey MISSING: exit %d, stderr %q", code, stderr)
	}
	// A file that cannot be read (here a directory) is an unreadable key:
	// exit 2 naming it, as README's table says, not a runtime failure.
	dir := t.TempDir()
	_, stderr, code = runStunnel(t, "", "pubkey", dir)
	if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, dir) {
		t.Errorf("pubkey DIRECTORY: exit %d, stderr %q; want exit 2 naming it", code, stderr)
	}
	if _, _, code := runStunnel(t, "", "pubkey", path, path); code != 2 {
		t.Errorf("pubkey with two files: exit %d, want 2", code)
	}
	// The word after the file is the unexpected one, not the file.
	_, stderr, code = runStunnel(t, "", "pubkey", path, "extra")
	if code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("pubkey FILE extra: exit %d, stderr %q; want exit 2 naming \"extra\"", code, stderr)
	}
	// A file after --pkcs11 URI is refused, not ignored (the URI is never
	// opened: the arguments are refused first).
	_, stderr, code = runStunnel(t, "", "pubkey", "--pkcs11", "pkcs11:token=gw;object=a?module-path=/nonexistent.so", path)
	if code != 2 || !strings.Contains(stderr, "unexpected argument") {
		t.Errorf("pubkey --pkcs11 URI FILE: exit %d, stderr %q; want exit 2 naming the extra argument", code, stderr)
	}
}

func TestCheckSaysOnePeer(t *testing.T) {
	dir := t.TempDir()
	priv, _ := handshake.ParsePrivateKey(strings.TrimSpace(mustGenkey(t)))
	peer, _ := handshake.ParsePrivateKey(strings.TrimSpace(mustGenkey(t)))
	path := filepath.Join(dir, "one.toml")
	if err := os.WriteFile(path, []byte(`[interface]
name = "st0"
peer_id = "a"
private_key = "`+priv.Base64()+`"
address = ["198.19.0.1/24"]

[[peer]]
id = "b"
public_key = "`+peer.PublicKey().String()+`"
allowed_ips = ["198.19.0.2/32"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runStunnel(t, "", "check", "-c", path)
	if code != 0 || !strings.Contains(stdout, "1 peer)") {
		t.Errorf("check: exit %d, stdout %q, stderr %q; want \"1 peer\"", code, stdout, stderr)
	}
}

// `stunnel help` lists every form of the command line PRODUCT.md gives,
// the token forms of genkey and pubkey included.
func TestHelpListsEveryCommand(t *testing.T) {
	_, stderr, code := runStunnel(t, "", "help")
	if code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	for _, form := range []string{"genkey ", "genkey --pkcs11 URI", "pubkey [FILE]", "pubkey --pkcs11 URI", "check -c FILE", "up -c FILE",
		"show [-c FILE | -i NAME] [--json | --metrics]", "demo ", "version ", "rekey [-c FILE | -i NAME] PEER", "disconnect [-c FILE | -i NAME] PEER",
		"reload [-c FILE | -i NAME]", "state save [-c FILE | -i NAME]", "tickets genkey", "directory put|delete|list"} {
		if !strings.Contains(stderr, "  stunnel "+form) {
			t.Errorf("help does not list `stunnel %s`:\n%s", form, stderr)
		}
	}
}
