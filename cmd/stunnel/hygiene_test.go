package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 12, finding 6, end to end: `check` and `up` refuse an inline key in
// a config others can read, with exit 2, FILE:LINE and what to do, and
// without printing the key.
func TestLooseInlineKeyExits2(t *testing.T) {
	key := strings.TrimSpace(mustGenkey(t))
	path := filepath.Join(t.TempDir(), "st.toml")
	src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key = \"" + key + "\"\naddress = [\"198.19.0.1/24\"]\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "up"} {
		stdout, stderr, code := runStunnel(t, "", cmd, "-c", path)
		if code != 2 || !strings.HasPrefix(stderr, path+":4: private_key is inline") || !strings.Contains(stderr, "chmod 600") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", cmd, code, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, key) {
			t.Errorf("%s printed the key", cmd)
		}
	}
}

// The commands that read only [interface] name from -c FILE mask a TOML
// syntax error as check and up do: an unquoted key's parser message quotes
// the key, and no run of it may reach the terminal (or a log that
// collects it).
func TestTargetSyntaxErrorHidesKey(t *testing.T) {
	// A key whose first 24 characters hold no + or /: the parser quotes the
	// bare word up to the first of those, so this key shows the most.
	var key string
	for i := 0; i < 100 && (key == "" || strings.ContainsAny(key[:24], "+/")); i++ {
		key = strings.TrimSpace(mustGenkey(t))
	}
	dir := t.TempDir()
	for _, src := range []string{
		"[interface]\nname = \"st0\"\nprivate_key = " + key + "\n",
		"[interface]\nname = \"st0\"\n[[peer]]\nid = \"b\"\npreshared_key = " + key + "\n",
		"[interface]\nname = \"st0\"\n[[peer]]\nid = \"b\"\nendpoint = " + key + "\n", // a line with no key in its name
	} {
		path := filepath.Join(dir, "st0.toml")
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		// Exit codes per PRODUCT.md: show, reload and rekey have only 0 and 1.
		for _, args := range [][]string{{"show", "-c", path}, {"reload", "-c", path}, {"rekey", "-c", path, "b"}, {"tickets", "list", "-c", path}} {
			stdout, stderr, code := runStunnel(t, "", args...)
			t.Logf("%v: %d %q", args, code, stderr)
			want := 2
			if args[0] != "tickets" {
				want = 1
			}
			if code != want || !strings.Contains(stderr, "st0.toml:") || !strings.Contains(stderr, "TOML syntax") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("%v on %q: exit %d, stderr %q; want exit %d and one line FILE:LINE: TOML syntax", args, src, code, stderr, want)
			}
			for i := 0; i+5 <= len(key); i++ {
				if run := key[i : i+5]; strings.Contains(stdout+stderr, run) {
					t.Errorf("%v printed part of the key (%d characters from offset %d)", args, len(run), i)
					break
				}
			}
		}
	}
}

// A key given on the command line where a command, a subcommand, a file or
// no argument belongs is refused without being printed: `stunnel pubkey
// KEY` (the key where its file belongs) or a ticket key line pasted after
// `tickets list` used to put the key on stderr, which scripts log.
func TestKeyArgumentNeverEchoed(t *testing.T) {
	priv := strings.TrimSpace(mustGenkey(t))
	hexSecret := strings.Repeat("0123456789abcdef", 4) // a group secret's form
	for _, key := range []string{priv, hexSecret} {
		for _, args := range [][]string{
			{key},
			{"pubkey", key},
			{"pubkey", "--pkcs11", "pkcs11:token=gw;object=a", key},
			{"genkey", key},
			{"check", "-c", "st.toml", key},
			{"show", key},
			{"rekey", "site-b", key},
			{"tickets", key},
			{"tickets", "list", "0123456789abcdef0123456789abcdef", key},
			{"directory", key},
		} {
			stdout, stderr, code := runStunnel(t, "", args...)
			if code == 0 || !strings.Contains(stderr, "[hidden: looks like a key]") {
				t.Errorf("stunnel %v: exit %d, stderr %q; want refused, the key masked", args[:len(args)-1], code, stderr)
			}
			if strings.Contains(stdout+stderr, key[:20]) || strings.Contains(stdout+stderr, key[len(key)-20:]) {
				t.Errorf("stunnel %v KEY printed the key: %q", args[:len(args)-1], stderr)
			}
		}
	}
}
