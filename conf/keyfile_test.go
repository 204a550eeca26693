package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFilePermissions(t *testing.T) {
	secret := testKey(t, 1).Base64()
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o700, true},
		{0o640, false}, {0o604, false}, {0o644, false}, {0o666, false},
	} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "k"), secret+"\n", tc.mode)
		path := filepath.Join(dir, "c.toml")
		// A relative key path is relative to the config's directory, not the working directory.
		writeFile(t, path, `[interface]
name = "st0"
peer_id = "a"
private_key_file = "k"
address = ["198.19.0.1/24"]
`, 0o644)
		c, err := Load(path)
		if tc.ok {
			if err != nil {
				t.Errorf("mode %04o: %v", tc.mode, err)
			} else if c.Interface.PrivateKey != testKey(t, 1) {
				t.Errorf("mode %04o: wrong key read", tc.mode)
			}
			continue
		}
		if err == nil {
			t.Errorf("mode %04o: accepted a key file others can read", tc.mode)
			continue
		}
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Line != 4 || !strings.Contains(ps[0].Msg, "readable by group or others") || !strings.Contains(ps[0].Msg, "chmod 600") {
			t.Errorf("mode %04o: got %v", tc.mode, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals the key: %v", err)
		}
	}
}

func TestKeyFileContents(t *testing.T) {
	for name, content := range map[string]string{
		"empty":    "",
		"garbage":  "not a key at all\n",
		"too long": strings.Repeat("A", 5000),
		"zeros":    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "k"), content, 0o600)
		path := filepath.Join(dir, "c.toml")
		writeFile(t, path, "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"k\"\naddress = [\"198.19.0.1/24\"]\n", 0o600)
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s key file accepted", name)
			continue
		}
		if ps := problems(t, err); len(ps) != 1 || ps[0].Line != 4 {
			t.Errorf("%s: %v", name, err)
		}
		if content != "" && strings.Contains(err.Error(), strings.TrimSpace(content)) {
			t.Errorf("%s: error echoes the file: %v", name, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/stunnel.toml")
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].String() != "/nonexistent/stunnel.toml:1: cannot read config: no such file or directory" {
		t.Errorf("got %v", err)
	}
}

func TestDirectoryAsKeyFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \".\"\naddress = [\"198.19.0.1/24\"]\n"
	_, err := Parse(filepath.Join(dir, "c.toml"), []byte(src))
	if ps := problems(t, err); len(ps) != 1 || !strings.Contains(ps[0].Msg, "is not a regular file") {
		t.Errorf("got %v", err)
	}
}
