package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"stunnel/internal/roottest"
)

// Issue 12, finding 6: keys that other users can read or replace are
// refused with FILE:LINE and what to do; key material is never echoed.

func TestInlineKeyInLooseConfigRefused(t *testing.T) {
	priv := testKey(t, 1).Base64()
	psk := testKey(t, 4).Base64()
	src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key = \"" + priv + "\"\naddress = [\"198.19.0.1/24\"]\n" +
		"[[peer]]\nid = \"b\"\npublic_key = \"" + testKey(t, 2).PublicKey().String() + "\"\npreshared_key = \"" + psk + "\"\nallowed_ips = [\"198.19.0.2/32\"]\n"
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o644, false}, {0o604, false}, {0o620, false}, {0o602, false}} {
		path := filepath.Join(t.TempDir(), "st.toml")
		writeFile(t, path, src, tc.mode)
		_, err := Load(path)
		if tc.ok {
			if err != nil {
				t.Errorf("mode %04o: %v", tc.mode, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("mode %04o: inline keys in a config others can read were accepted", tc.mode)
			continue
		}
		ps := problems(t, err)
		if len(ps) != 2 || ps[0].Line != 4 || ps[1].Line != 9 || ps[0].File != path ||
			!strings.Contains(ps[0].Msg, "private_key is inline") || !strings.Contains(ps[1].Msg, "preshared_key is inline") ||
			!strings.Contains(ps[0].Msg, "chmod 600") {
			t.Errorf("mode %04o: got %v", tc.mode, err)
		}
		if strings.Contains(err.Error(), priv) || strings.Contains(err.Error(), psk) {
			t.Errorf("error reveals a key: %v", err)
		}
	}
}

// loadWithKeyFile writes key (mode) as dir/k and a config naming it for
// private_key_file, or for a peer's preshared_key_file when psk.
func loadWithKeyFile(t *testing.T, dir string, mode os.FileMode, psk bool) error {
	t.Helper()
	writeFile(t, filepath.Join(dir, "k"), testKey(t, 1).Base64()+"\n", mode)
	src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"k\"\naddress = [\"198.19.0.1/24\"]\n"
	cdir := t.TempDir()
	if psk {
		writeFile(t, filepath.Join(cdir, "own"), testKey(t, 3).Base64()+"\n", 0o600)
		src = "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"own\"\naddress = [\"198.19.0.1/24\"]\n" +
			"[[peer]]\nid = \"b\"\npublic_key = \"" + testKey(t, 2).PublicKey().String() + "\"\npreshared_key_file = \"k\"\nallowed_ips = [\"198.19.0.2/32\"]\n"
	}
	path := filepath.Join(cdir, "st.toml")
	writeFile(t, path, strings.Replace(src, `"k"`, `"`+filepath.Join(dir, "k")+`"`, 1), 0o600)
	_, err := Load(path)
	return err
}

func TestLooseKeyFilesRefused(t *testing.T) {
	for _, psk := range []bool{false, true} {
		what := "private key"
		if psk {
			what = "PSK"
		}
		for _, tc := range []struct {
			mode os.FileMode
			msg  string
		}{{0o622, "writable by group or others"}, {0o602, "writable by group or others"}, {0o620, "writable by group or others"}, {0o604, "readable"}} {
			err := loadWithKeyFile(t, t.TempDir(), tc.mode, psk)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("%s mode %04o: got %v", what, tc.mode, err)
			}
		}
		// A world-writable directory without the sticky bit: anyone could
		// swap the file. With the sticky bit (like /tmp) it is fine.
		loose := filepath.Join(t.TempDir(), "loose")
		if err := os.Mkdir(loose, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(loose, 0o777); err != nil {
			t.Fatal(err)
		}
		err := loadWithKeyFile(t, loose, 0o600, psk)
		if err == nil || !strings.Contains(err.Error(), "anyone can write to") || !strings.Contains(err.Error(), loose) {
			t.Errorf("%s in a world-writable directory: got %v", what, err)
		}
		if err := os.Chmod(loose, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		if err := loadWithKeyFile(t, loose, 0o600, psk); err != nil {
			t.Errorf("%s in a sticky world-writable directory: %v", what, err)
		}
		// Only root can give a file away: without root this part skips
		// loudly, and fails under STUNNEL_REQUIRE_NETNS=1 instead of
		// passing unseen.
		t.Run(what+" owned by another user", func(t *testing.T) {
			roottest.Require(t, "chown of a key file to another user")
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "k"), testKey(t, 1).Base64()+"\n", 0o600)
			if err := os.Chown(filepath.Join(dir, "k"), 65534, 65534); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(t.TempDir(), "st.toml")
			src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"" + filepath.Join(dir, "k") + "\"\naddress = [\"198.19.0.1/24\"]\n"
			writeFile(t, cfg, src, 0o600)
			if _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") || !strings.Contains(err.Error(), "st.toml:4:") ||
				!strings.Contains(err.Error(), "run: chown root "+filepath.Join(dir, "k")) {
				t.Errorf("key file owned by another user: got %v", err)
			}
		})
	}
}

func TestSyntaxErrorNeverEchoesKey(t *testing.T) {
	priv := testKey(t, 1).Base64()
	for name, line := range map[string]string{
		"unterminated": `private_key = "` + priv,
		"unquoted":     `private_key = ` + priv,
		"no equals":    `private_key "` + priv + `"`,
		"psk bare":     `preshared_key = ` + priv,
		"odd name":     `pk = ` + priv,
		// The parser quotes a bare word only up to its first digit: a key
		// on a line with no key in its name came through as a short run.
		"short run": `endpoint = AbCdE9` + priv,
	} {
		src := "[interface]\nname = \"st0\"\n" + line + "\naddress = [\"198.19.0.1/24\"]\n"
		_, err := Parse("st.toml", []byte(src))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		ps := problems(t, err)
		if len(ps) != 1 || !strings.Contains(ps[0].Msg, "TOML syntax") {
			t.Errorf("%s: got %v", name, err)
		}
		value := strings.Trim(line[strings.IndexAny(line, " ")+1:], `=" `)
		for i := 0; i+5 <= len(value); i++ {
			if strings.Contains(err.Error(), value[i:i+5]) {
				t.Fatalf("%s: the error echoes key material %q: %v", name, value[i:i+5], err)
			}
		}
	}
}

// Issue 12, finding 2: a mapped prefix in allowed_ips is refused with
// FILE:LINE, since the routing table never unmaps.
func TestMappedAllowedIPsRefused(t *testing.T) {
	src := expand(t, iface+`[[peer]]
id = "b"
public_key = "PUB_B"
allowed_ips = ["198.19.0.2/32", "::ffff:198.19.5.0/120"]
`)
	_, err := Parse("st.toml", []byte(src))
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Line != 9 || !strings.Contains(ps[0].Msg, "IPv4-mapped") || !strings.Contains(ps[0].Msg, "never matches") {
		t.Fatalf("got %v", err)
	}
}

// A key written twice is a syntax error whose message names only the key,
// never a value: on a line that holds key material it is shown too, not
// replaced by the "check its quotes" advice that sent the reader looking
// for a quoting mistake in a line that has none.
func TestDuplicateKeyNamedOnKeyLines(t *testing.T) {
	priv := testKey(t, 1).Base64()
	for _, c := range []struct{ src, want string }{
		{iface + "private_key = \"" + priv + "\"\n", "Key 'interface.private_key' has already been defined."},
		{iface + peerB + "public_key = \"" + priv + "\"\n", "Key 'peer.public_key' has already been defined."},
		{iface + "[tickets]\nkey_file = \"a\"\nkey_file = \"b\"\n", "Key 'tickets.key_file' has already been defined."},
	} {
		_, err := Parse("st.toml", []byte(expand(t, c.src)))
		if err == nil {
			t.Fatalf("%q: accepted", c.src)
		}
		ps := problems(t, err)
		if len(ps) != 1 || !strings.Contains(ps[0].Msg, c.want) || strings.Contains(err.Error(), priv[:8]) {
			t.Errorf("got %v; want one problem saying %q, no key material", err, c.want)
		}
	}
	// A name that is no key of ours is still never shown on such a line.
	src := iface + "\"" + priv + "\" = 1\n\"" + priv + "\" = 2\n"
	if _, err := Parse("st.toml", []byte(expand(t, src))); err == nil || strings.Contains(err.Error(), priv[:8]) {
		t.Errorf("a key-like name written twice: %v; want refused without echoing it", err)
	}
}

// A key pasted where a value or a key name belongs is quoted by the
// message that refuses it; the message must say what is wrong and where,
// but never show the key (base64 as genkey prints it, or a group secret's
// 64 hex digits).
func TestMisplacedKeyNeverEchoed(t *testing.T) {
	priv := testKey(t, 1).Base64()
	hex := strings.Repeat("0123456789abcdef", 4)
	src := "[interface]\nname = \"" + priv + "\"\npeer_id = \"a\"\nprivate_key_file = \"" + priv + "\"\n" +
		"address = [\"" + priv + "\"]\nlog_level = \"" + hex + "\"\n\"" + priv + "\" = 1\n" +
		"[session]\ncipher = \"" + priv + "\"\n" +
		"[[peer]]\nid = \"b\"\npublic_key = \"" + testKey(t, 2).PublicKey().String() + "\"\nendpoint = \"" + priv + ":1\"\n" +
		"allowed_ips = [\"" + priv + "\"]\n" + hex + " = 2\n"
	_, err := Parse("st.toml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	// One problem for each misplaced value or name, each still saying
	// which key is wrong.
	want := map[int]string{2: "name", 4: "private_key_file", 5: "address", 6: "log_level", 7: "unknown key",
		9: "cipher", 13: "endpoint", 14: "allowed_ips", 15: "unknown key"}
	for _, p := range problems(t, err) {
		if w, ok := want[p.Line]; ok && strings.Contains(p.String(), w) {
			delete(want, p.Line)
		}
	}
	if len(want) > 0 {
		t.Errorf("no problem naming %v:\n%v", want, err)
	}
	for _, secret := range []string{priv, hex} {
		if strings.Contains(err.Error(), secret[:24]) || strings.Contains(err.Error(), secret[20:]) {
			t.Errorf("a problem echoes key material:\n%v", err)
		}
	}
}

// A syntax error on a line whose name merely contains "key" (rekey_after)
// or is long enough to look key-like (persistent_keepalive) is no key
// material: the parser's words are shown, which say what is wrong, rather
// than advice about a key that is not there. A key pasted as the value of
// such a line is still never echoed.
func TestSyntaxErrorOnPlainKeyNamesShown(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"[session]\nrekey_after = 120s", "but got 's' instead"},
		{"[session]\nrekey_after_messages = 9223372036854775808", "9223372036854775808"},
		{"[[peer]]\npersistent_keepalive = 25s", "but got 's' instead"},
		{"[tickets]\nencrypt_decrypt_lifetime = 2h", "but got 'h' instead"},
	} {
		src := "[interface]\nname = \"st0\"\n" + c.line + "\n"
		_, err := Parse("st.toml", []byte(src))
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Line != 4 || !strings.Contains(ps[0].Msg, c.want) || strings.Contains(ps[0].Msg, "key") {
			t.Errorf("%q: got %v; want the parser's message on line 4 (%q)", c.line, err, c.want)
		}
	}
	priv := testKey(t, 1).Base64()
	for _, line := range []string{"[session]\nrekey_after = " + priv, "[[peer]]\npersistent_keepalive = \"" + priv} {
		_, err := Parse("st.toml", []byte("[interface]\nname = \"st0\"\n"+line+"\n"))
		if err == nil || strings.Contains(err.Error(), priv[:8]) || !strings.Contains(err.Error(), "is malformed") {
			t.Errorf("%q: got %v; want refused without echoing the key", line, err)
		}
	}
}

// fakeOwned is a FileInfo whose owner is uid, for ownerOK without root.
type fakeOwned struct {
	os.FileInfo
	uid uint32
}

func (f fakeOwned) Sys() any { return &syscall.Stat_t{Uid: f.uid} }

// The ownership refusal names the file in the command it advises, ready to
// paste, as the mode refusals do (it said "chown UID FILE").
func TestOwnerAdviceNamesTheFile(t *testing.T) {
	path := "/etc/stunnel/site-a.key"
	uid := uint32(os.Geteuid()) + 4242
	err := ownerOK(path, fakeOwned{uid: uid})
	want := "run: chown root " + path
	if os.Geteuid() != 0 {
		want = fmt.Sprintf("run: chown %d %s, or chown root %s", os.Geteuid(), path, path)
	}
	if err == nil || !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), "FILE") {
		t.Errorf("owned by uid %d: got %v; want it to end %q", uid, err, want)
	}
	for _, ok := range []uint32{0, uint32(os.Geteuid())} {
		if err := ownerOK(path, fakeOwned{uid: ok}); err != nil {
			t.Errorf("owned by uid %d: %v", ok, err)
		}
	}
}
