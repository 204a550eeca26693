package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/tickets"
)

func TestTicketRingEtcd(t *testing.T) {
	dir := t.TempDir()
	g, err := tickets.NewGroupSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tickets.WriteGroupSecretFile(filepath.Join(dir, "group.secret"), g); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "open.secret"), []byte(strings.Repeat("ab", 32)), 0o644)
	os.WriteFile(filepath.Join(dir, "short.secret"), []byte("abcd"), 0o600)
	path := filepath.Join(dir, "st0.toml")
	const dirTable = "[directory]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/s/\"\ncache_file = \"d.cache\"\n"
	src := iface + "[tickets]\nring = \"etcd\"\ngroup_secret_file = \"group.secret\"\nrotator_ttl = \"3s\"\n" + dirTable
	c, err := Parse(path, []byte(expand(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tickets.Ring != "etcd" || c.Tickets.GroupSecretFile != filepath.Join(dir, "group.secret") || c.Tickets.RotatorTTL != 3*time.Second {
		t.Fatalf("got %+v", c.Tickets)
	}

	// Every problem on its line (the [tickets] header is line 6).
	cases := []struct {
		src  string
		line int
		msg  string
	}{
		{"[tickets]\nring = \"etcd\"\ngroup_secret_file = \"group.secret\"\n", 7, "needs a [directory] table"},
		{"[tickets]\nring = \"etcd\"\n" + dirTable, 7, "needs group_secret_file"},
		{"[tickets]\nring = \"consul\"\n", 7, `ring must be "etcd"`},
		{"[tickets]\ngroup_secret_file = \"group.secret\"\n", 7, `used only with ring = "etcd"`},
		{"[tickets]\nring = \"etcd\"\ngroup_secret_file = \"open.secret\"\n" + dirTable, 8, "chmod 600"},
		{"[tickets]\nring = \"etcd\"\ngroup_secret_file = \"short.secret\"\n" + dirTable, 8, "does not hold 32 bytes"},
		{"[tickets]\nring = \"etcd\"\ngroup_secret_file = \"none.secret\"\n" + dirTable, 8, "stunnel tickets group-secret -o"},
		{"[tickets]\nring = \"etcd\"\ngroup_secret_file = \"group.secret\"\nrotator_ttl = \"1500ms\"\n" + dirTable, 9, "whole seconds"},
	}
	for _, tc := range cases {
		_, err := Parse(path, []byte(expand(t, iface+tc.src)))
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Line != tc.line || !strings.Contains(ps[0].Msg, tc.msg) {
			t.Errorf("%q: got %v, want one problem on line %d containing %q", tc.src, ps, tc.line, tc.msg)
		}
	}
	// key_file and the etcd ring exclude each other.
	k, _ := tickets.GenerateKey(nil, time.Now(), time.Hour, time.Hour)
	tickets.WriteKeyFile(filepath.Join(dir, "t.keys"), []tickets.Key{k})
	_, err = Parse(path, []byte(expand(t, iface+"[tickets]\nkey_file = \"t.keys\"\nring = \"etcd\"\ngroup_secret_file = \"group.secret\"\n"+dirTable)))
	if ps := problems(t, err); len(ps) != 1 || ps[0].Line != 8 || !strings.Contains(ps[0].Msg, "exclude each other") {
		t.Errorf("key_file with ring = etcd: %v", ps)
	}
}
