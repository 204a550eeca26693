package pkcs11key

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/internal/roottest"
)

// TestPINFileHygiene: a PIN file is held to what a key file is held to
// (conf's checkKeyFile): one that group or others can write, or that a
// user other than root or us owns, is refused, at the check and at each
// read, and the message never holds the PIN.
func TestPINFileHygiene(t *testing.T) {
	dir := t.TempDir()
	write := func(t *testing.T, name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("2468-pin\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write(t, "good", 0o600)
	if err := CheckPINFile(good); err != nil {
		t.Fatalf("a 0600 PIN file of ours: %v", err)
	}
	pin, err := readPIN(good)
	if err != nil || string(pin) != "2468-pin" {
		t.Fatalf("readPIN of a 0600 PIN file of ours: %q, %v", pin, err)
	}
	refused := func(t *testing.T, path, msg string) {
		t.Helper()
		for _, err := range []error{CheckPINFile(path), func() error { _, err := readPIN(path); return err }()} {
			if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: %v, want %q", filepath.Base(path), err, msg)
			}
			if err != nil && strings.Contains(err.Error(), "2468") {
				t.Errorf("%s: the PIN shows in %q", filepath.Base(path), err)
			}
		}
	}
	refused(t, write(t, "readable", 0o640), "readable by group or others")
	refused(t, write(t, "group-writable", 0o620), "writable by group or others")
	refused(t, write(t, "world-writable", 0o602), "writable by group or others")
	// Only root can give a file away: without root this part skips loudly,
	// and fails under STUNNEL_REQUIRE_NETNS=1 instead of passing unseen.
	t.Run("owned by another user", func(t *testing.T) {
		roottest.Require(t, "chown of a PIN file to another user")
		p := write(t, "theirs", 0o600)
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		refused(t, p, "owned by uid 65534")
	})
}

// TestPINFileOneLine: a PIN file with more than one line is refused when
// read, before any login (each wrong PIN costs one of the token's tries),
// saying so and not quoting it; a trailing newline, CRLF too, is not a line.
func TestPINFileOneLine(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ content, want string }{
		{"1357-pin\n", "1357-pin"},
		{"1357-pin\r\n", "1357-pin"},
		{"1357-pin", "1357-pin"},
		{"1357-pin\n# the token's PIN\n", ""},
		{"1357-pin\r\nold-pin\r\n", ""},
	} {
		p := filepath.Join(dir, "pin")
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		pin, err := readPIN(p)
		switch {
		case c.want != "" && (err != nil || string(pin) != c.want):
			t.Errorf("%q: %q, %v; want %q", c.content, pin, err, c.want)
		case c.want == "" && (err == nil || !strings.Contains(err.Error(), "more than one line") || strings.Contains(err.Error(), "1357")):
			t.Errorf("%q: %q, %v; want a refusal that does not quote the PIN", c.content, pin, err)
		}
	}
}
