package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/tickets"
)

func TestTicketsGenkeyAddList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ticket.keys")
	var out, errb bytes.Buffer
	if code := runTickets([]string{"genkey", "-o", path}, &out, &errb); code != exitOK {
		t.Fatalf("genkey: %d %s", code, errb.String())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	if code := runTickets([]string{"genkey", "-o", path}, &out, &errb); code != exitBadConfig {
		t.Fatal("genkey overwrote an existing file")
	}
	if code := runTickets([]string{"add", "--start-in", "10m", "--encrypt-decrypt-lifetime", "1h", path}, &out, &errb); code != exitOK {
		t.Fatalf("add: %d %s", code, errb.String())
	}
	keys, err := tickets.ReadKeyFile(path)
	if err != nil || len(keys) != 2 || keys[1].EncryptDecrypt.Hours() != 1 {
		t.Fatalf("after add: %d keys, %v", len(keys), err)
	}
	out.Reset()
	if code := runTickets([]string{"list", path}, &out, &errb); code != exitOK {
		t.Fatalf("list: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "encrypt-decrypt") || !strings.Contains(out.String(), "pending") || !strings.Contains(out.String(), keys[0].NameHex()) {
		t.Fatalf("list output:\n%s", out.String())
	}
	secret := strings.Fields(strings.Split(string(tickets.MarshalKeyFile(keys)), "\n")[1])[1]
	if strings.Contains(out.String(), secret) {
		t.Fatal("list prints a secret")
	}
	os.Chmod(path, 0o644)
	errb.Reset()
	if code := runTickets([]string{"add", path}, &out, &errb); code != exitBadConfig || !strings.Contains(errb.String(), "chmod 600") {
		t.Fatalf("add to a group-readable file: %d %s", code, errb.String())
	}
	for _, args := range [][]string{{}, {"bogus"}, {"add"}, {"genkey"}, {"add", "--decrypt-lifetime", "0s", path}} {
		if code := runTickets(args, &out, &errb); code != exitBadConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitBadConfig)
		}
	}
	// retire acts on a running tunnel's ring only (cmdTickets routes it to
	// the control socket); the offline runner refuses it as bad usage.
	if code := runTickets([]string{"retire", "abc"}, &out, &errb); code != exitBadConfig {
		t.Error("offline retire must be refused as bad usage")
	}
	f := filepath.Join(t.TempDir(), "k")
	os.WriteFile(f, nil, 0o600)
	if !keyFileArg([]string{"--decrypt-lifetime", "1h", f}) || keyFileArg([]string{f, "-c", "x.toml"}) || keyFileArg([]string{"abc"}) {
		t.Error("keyFileArg does not tell a key file from a running tunnel's form")
	}
}

// `tickets add` erases the secret of every key it read, written back or
// dropped as ended. Before, compacting the keys in place left stale copies
// past the kept ones (a dropped key's among them) and, with nothing to
// drop, appending the new key moved the kept ones to a new array and left
// the one read unerased.
func TestTicketsAddErasesKeysItReads(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	gen := func(created time.Time) tickets.Key {
		t.Helper()
		k, err := tickets.GenerateKey(nil, created, time.Hour, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, c := range []struct {
		name string
		live []bool // per key in the file: false = its decrypt-only life ended
	}{
		{"nothing to drop", []bool{true}},
		{"ended keys last", []bool{true, false, false}},
		{"ended keys around a live one", []bool{false, true, false}},
	} {
		path := filepath.Join(t.TempDir(), "ticket.keys")
		var file []tickets.Key
		want := map[string]bool{}
		for _, live := range c.live {
			created := now.Add(-3 * time.Hour) // ended an hour ago
			if live {
				created = now
			}
			k := gen(created)
			want[k.NameHex()] = live
			file = append(file, k)
		}
		if err := tickets.WriteKeyFile(path, file); err != nil {
			t.Fatal(err)
		}
		keys, err := tickets.ReadKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if code := addKey(&out, &errb, path, keys, now, now, time.Hour, time.Hour); code != exitOK {
			t.Fatalf("%s: add: %d %s", c.name, code, errb.String())
		}
		for i := range keys {
			if !keys[i].IsErased() {
				t.Errorf("%s: key %d of the file (%s, live %v) not erased after add", c.name, i, keys[i].NameHex(), c.live[i])
			}
		}
		after, err := tickets.ReadKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for i := range after {
			names = append(names, after[i].NameHex())
			if live, old := want[after[i].NameHex()]; old && !live {
				t.Errorf("%s: ended key %s written back", c.name, after[i].NameHex())
			}
			after[i].Erase()
		}
		if n := strings.Count(fmt.Sprint(c.live), "true"); len(after) != n+1 {
			t.Errorf("%s: %d keys after add (%v), want the %d live ones and the new one", c.name, len(after), names, n)
		}
	}
}

// `tickets list FILE` with a FILE that is not there (a typo) says so
// (exit 2), rather than calling it an unexpected argument.
func TestTicketsListMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tiket.keys")
	for path, want := range map[string]string{
		missing:     "cannot be read: no such file or directory",
		t.TempDir(): "is not a regular file",
	} {
		_, stderr, code := runStunnel(t, "", "tickets", "list", path)
		if code != exitBadConfig || strings.Count(stderr, "\n") != 1 ||
			!strings.HasPrefix(stderr, fmt.Sprintf("stunnel tickets list: key file %q %s", path, want)) {
			t.Errorf("tickets list %s: exit %d, stderr %q; want exit 2 saying the key file %s", path, code, stderr, want)
		}
	}
}
