package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
