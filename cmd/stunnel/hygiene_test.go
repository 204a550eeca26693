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
