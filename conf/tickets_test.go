package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/tickets"
)

func TestTicketsDefaults(t *testing.T) {
	c, err := Parse("st0.toml", []byte(expand(t, iface+peerB)))
	if err != nil {
		t.Fatal(err)
	}
	want := Tickets{Enabled: true, EncryptDecryptLifetime: 2 * time.Hour, DecryptLifetime: 13 * time.Hour, ReauthAfter: 24 * time.Hour}
	if c.Tickets != want {
		t.Fatalf("defaults %+v, want %+v", c.Tickets, want)
	}
}

func TestTicketsTable(t *testing.T) {
	dir := t.TempDir()
	k, err := tickets.GenerateKey(nil, time.Now(), time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := tickets.WriteKeyFile(filepath.Join(dir, "t.keys"), []tickets.Key{k}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "st0.toml")
	src := iface + "[tickets]\nenabled = false\nkey_file = \"t.keys\"\nencrypt_decrypt_lifetime = \"1h\"\ndecrypt_lifetime = \"5h\"\nreauth_after = \"12h\"\n"
	c, err := Parse(path, []byte(expand(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	want := Tickets{KeyFile: filepath.Join(dir, "t.keys"), EncryptDecryptLifetime: time.Hour, DecryptLifetime: 5 * time.Hour, ReauthAfter: 12 * time.Hour}
	if c.Tickets != want {
		t.Fatalf("got %+v, want %+v", c.Tickets, want)
	}

	if err := os.Chmod(filepath.Join(dir, "t.keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bad.keys"), []byte("nonsense\n"), 0o600)
	// A key file with no key: `check`, the start and a reload refuse it
	// alike (a reload would otherwise erase the running ring's keys).
	os.WriteFile(filepath.Join(dir, "empty.keys"), []byte("# stunnel ticket keys\n"), 0o600)
	cases := []struct{ src, msg string }{
		{"[tickets]\nkey_file = \"t.keys\"\n", "chmod 600"},
		{"[tickets]\nkey_file = \"bad.keys\"\n", "bad.keys:1: want 5 fields"},
		{"[tickets]\nkey_file = \"none.keys\"\n", "stunnel tickets genkey -o"},
		{"[tickets]\nkey_file = \"empty.keys\"\n", "key_file: ticket key file " + filepath.Join(dir, "empty.keys") + " lists no key"},
		{"[tickets]\nreauth_after = \"0s\"\n", "reauth_after must be greater than zero"},
		{"[tickets]\nencrypt_decrypt_lifetime = \"0s\"\n", "encrypt_decrypt_lifetime must be greater than zero"},
		{"[tickets]\ndecrypt_lifetime = \"-1h\"\n", "must not be negative"},
		{"[tickets]\nenabled = \"yes\"\n", "enabled must be true or false"},
		{"[tickets]\nkey_flie = \"x\"\n", `unknown key "key_flie" in [tickets]`},
	}
	for _, tc := range cases {
		_, err := Parse(path, []byte(expand(t, iface+tc.src)))
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Line != 7 || !strings.Contains(ps[0].Msg, tc.msg) {
			t.Errorf("%q: got %v, want one problem on line 7 containing %q", tc.src, ps, tc.msg)
		}
	}
}
