package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/internal/etcdtest"
)

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ line, want string }{
		{"", "/var/lib/stunnel/st0.state"},
		{`state_file = "/srv/st0.state"`, "/srv/st0.state"},
		{`state_file = "sub/../st.state"`, filepath.Join(dir, "st.state")},
		{`state_file = ""`, ""},
	} {
		path := filepath.Join(dir, "st0.toml")
		writeFile(t, path, expand(t, iface+c.line+"\n"), 0o600)
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if cfg.Interface.StateFile != c.want {
			t.Fatalf("%q: StateFile = %q, want %q", c.line, cfg.Interface.StateFile, c.want)
		}
	}
	for _, c := range []struct{ line, msg string }{
		{`state_file = "/var/lib/stunnel/"`, "names a directory"},
		{`state_file = 5`, "state_file"},
	} {
		path := filepath.Join(dir, "bad.toml")
		writeFile(t, path, expand(t, iface+c.line+"\n"), 0o600)
		_, err := Load(path)
		if err == nil {
			t.Fatalf("%q accepted", c.line)
		}
		probs := problems(t, err)
		if len(probs) != 1 || probs[0].Line != 6 || !strings.Contains(probs[0].Msg, c.msg) {
			t.Fatalf("%q: problems %v; want one at line 6 mentioning %q", c.line, probs, c.msg)
		}
	}
}

// A state_file that names an existing directory without the trailing slash
// ("/var/lib/stunnel", where the files go) must be refused by check: at
// start, statefile.Take claims whatever is at the path by renaming it, so
// up would move the whole directory, every other instance's state and
// directory cache with it, to PATH.refused.
func TestStateFileExistingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`state_file = "state"`, `state_file = "` + filepath.Join(dir, "state") + `"`} {
		path := filepath.Join(dir, "st0.toml")
		writeFile(t, path, expand(t, iface+line+"\n"), 0o600)
		_, err := Load(path)
		if err == nil {
			t.Fatalf("%q (a directory) accepted", line)
		}
		probs := problems(t, err)
		if len(probs) != 1 || probs[0].Line != 6 || !strings.Contains(probs[0].Msg, "is a directory") {
			t.Fatalf("%q: problems %v; want one at line 6 saying it is a directory", line, probs)
		}
	}
}

// A state_file that names a file the config already uses for something
// else: at start the daemon moves whatever is at the path aside (it is no
// state file) and at a clean stop writes its sealed state there, so up
// took the private key (or the config itself) away from the next start.
func TestStateFileIsNotAnotherFileOfTheConfig(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, 1)
	writeFile(t, filepath.Join(dir, "a.key"), k.Base64()+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "b.psk"), testKey(t, 4).Base64()+"\n", 0o600)
	head := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"a.key\"\naddress = [\"198.19.0.1/24\"]\n"
	peer := expand(t, "[[peer]]\nid = \"b\"\npublic_key = \"PUB_B\"\nallowed_ips = [\"198.19.0.2/32\"]\npreshared_key_file = \"b.psk\"\n")
	for _, c := range []struct{ state, what string }{
		{"a.key", "private_key_file"},
		{filepath.Join(dir, "sub", "..", "a.key"), "private_key_file"},
		{"st0.toml", "the config file"},
		{"b.psk", "preshared_key_file"},
	} {
		path := filepath.Join(dir, "st0.toml")
		writeFile(t, path, head+"state_file = \""+c.state+"\"\n"+peer, 0o600)
		_, err := Load(path)
		if err == nil {
			t.Errorf("state_file %q (also %s) accepted", c.state, c.what)
			continue
		}
		probs := problems(t, err)
		if len(probs) != 1 || probs[0].Line != 6 || !strings.Contains(probs[0].Msg, c.what) {
			t.Errorf("state_file %q: problems %v; want one at line 6 naming %s", c.state, probs, c.what)
		}
	}
}

// A [directory] cache_file that names a file the config already uses for
// something else: the daemon writes the sealed directory over it after
// every sync with etcd, so the first start took the private key (or the
// config, or etcd's client key) away from the next one, and a state file
// there was overwritten while the daemon ran.
func TestDirectoryCacheFileIsNotAnotherFileOfTheConfig(t *testing.T) {
	dir := t.TempDir()
	etcdtest.MakeTLS(t, dir, []string{"198.18.0.10"}) // ca.pem, client.pem, client.key
	writeFile(t, filepath.Join(dir, "a.key"), testKey(t, 1).Base64()+"\n", 0o600)
	head := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"a.key\"\naddress = [\"198.19.0.1/24\"]\n"
	tail := "[directory]\netcd_endpoints = [\"https://198.18.0.10:2379\"]\nprefix = \"/s/\"\nca_file = \"ca.pem\"\n" +
		"cert_file = \"client.pem\"\nkey_file = \"client.key\"\ncache_file = \"%s\"\n"
	for _, c := range []struct {
		state, cache, what string
		line               int
	}{
		{"", "a.key", "private_key_file", 12},
		{"", "st0.toml", "the config file", 12},
		{"", "client.key", "[directory] key_file", 12},
		{"", "/var/lib/stunnel/st0.state", "state_file", 12}, // the default state file
		// An explicit state_file is the one stateFileClash names.
		{"state_file = \"st0.state\"\n", "st0.state", "[directory] cache_file", 6},
	} {
		path := filepath.Join(dir, "st0.toml")
		writeFile(t, path, head+c.state+fmt.Sprintf(tail, c.cache), 0o600)
		_, err := Load(path)
		if err == nil {
			t.Errorf("cache_file %q (also %s) accepted", c.cache, c.what)
			continue
		}
		probs := problems(t, err)
		if len(probs) != 1 || probs[0].Line != c.line || !strings.Contains(probs[0].Msg, c.what) {
			t.Errorf("cache_file %q: problems %v; want one at line %d naming %s", c.cache, probs, c.line, c.what)
		}
	}
}

// SameFile, shared by the config's file clash check and the reload CLI's
// note: another spelling of a path, a symlink and a hard link are the same
// file; a copy is not; a path out of sight is compared by its spelling.
func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	own, cp := filepath.Join(dir, "st0.toml"), filepath.Join(dir, "copy.toml")
	sym, hard := filepath.Join(dir, "sym.toml"), filepath.Join(dir, "hard.toml")
	writeFile(t, own, "x\n", 0o600)
	writeFile(t, cp, "x\n", 0o600)
	if err := os.Symlink(own, sym); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(own, hard); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	gone := filepath.Join(dir, "gone", "st.toml")
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{own, own, true},
		{own, "st0.toml", true},
		{own, filepath.Join(dir, "sub", "..", "st0.toml"), true},
		{own, sym, true},
		{sym, own, true},
		{own, hard, true},
		{own, cp, false},
		{gone, filepath.Join(dir, "gone", ".", "st.toml"), true},
		{gone, own, false},
		{own, gone, false},
	} {
		if got := SameFile(c.a, c.b); got != c.same {
			t.Errorf("SameFile(%q, %q) = %v; want %v", c.a, c.b, got, c.same)
		}
	}
}
