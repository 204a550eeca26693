package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/tickets"
	"stunnel/tunnel"
)

func TestTicketsGroupSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.secret")
	var out, errb bytes.Buffer
	if code := runGroupSecret([]string{"-o", path}, &out, &errb); code != exitOK {
		t.Fatalf("group-secret: %d %s", code, errb.String())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("group secret file mode: %v %v", fi, err)
	}
	if _, err := tickets.ReadGroupSecretFile(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(out.String(), strings.TrimSpace(string(data))) {
		t.Fatal("group-secret printed the secret")
	}
	before := string(data)
	if code := runGroupSecret([]string{"-o", path}, &out, &errb); code != exitBadConfig {
		t.Fatal("group-secret overwrote an existing file")
	}
	if data, _ := os.ReadFile(path); string(data) != before {
		t.Fatal("the existing secret changed")
	}
	for _, args := range [][]string{{}, {"-o"}, {"-o", path + "2", "extra"}} {
		if code := runGroupSecret(args, &out, &errb); code != exitBadConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitBadConfig)
		}
	}
	// A file that cannot be written is a failure, 1, not "bad usage or the
	// file exists" (2), and the message does not blame an existing file.
	errb.Reset()
	missing := filepath.Join(t.TempDir(), "no-such-dir", "group.secret")
	if code := runGroupSecret([]string{"-o", missing}, &out, &errb); code != exitRuntime || strings.Contains(errb.String(), "existing file") ||
		!strings.Contains(errb.String(), missing) {
		t.Errorf("group-secret into a missing directory: exit %d, stderr %q; want exit 1 naming the file, no word of an existing file", code, errb.String())
	}
}

func TestShowTicketRing(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	st := tunnel.Status{Name: "st0", TicketRing: &tunnel.TicketRingStatus{Role: "rotator", Rotator: "gw1 pid 7",
		State: "connected", Keys: 3, Added: 2, LastSync: now.Add(-2 * time.Second)}}
	var b bytes.Buffer
	writeStatus(&b, &st, now)
	if !strings.Contains(b.String(), "ticket ring: etcd, rotator (rotator: gw1 pid 7), connected, last sync 2 seconds ago, 3 keys, 0 refused records, 2 added and 0 deleted here") {
		t.Fatalf("show:\n%s", b.String())
	}
	// The rotator's name is the value of its election key, which whoever
	// writes to etcd may set: one holding a newline or an escape is quoted,
	// not printed as lines or terminal codes.
	st.TicketRing = &tunnel.TicketRingStatus{Role: "follower", Rotator: "x\n  directory: connected\x1b[2K", State: "connected"}
	b.Reset()
	writeStatus(&b, &st, now)
	if strings.Count(b.String(), "\n") != 5 || strings.ContainsRune(b.String(), 0x1b) || !strings.Contains(b.String(), `(rotator: "x\n  directory: connected\x1b[2K")`) {
		t.Fatalf("show of a rotator name with control characters:\n%s", b.String())
	}
	st.TicketRing = &tunnel.TicketRingStatus{Role: "connecting", State: "retrying", LastError: "listing: context deadline exceeded"}
	b.Reset()
	writeStatus(&b, &st, now)
	if !strings.Contains(b.String(), "ticket ring error: listing: context deadline exceeded") || !strings.Contains(b.String(), "never") {
		t.Fatalf("show while etcd is away:\n%s", b.String())
	}
}

// A running etcd ring's keys belong to the elected rotator: add and retire
// through the control socket are refused, list works.
func TestTicketHandlersEtcdRing(t *testing.T) {
	ring := tickets.NewRing(tickets.Options{})
	ring.SetExternalKeys(nil)
	cfg := &conf.Config{Tickets: conf.Tickets{Enabled: true, Ring: "etcd", EncryptDecryptLifetime: time.Hour, DecryptLifetime: time.Hour}}
	list, add, retire := ticketHandlers(ring, newRunningConfig(cfg))
	if _, err := list(); err != nil {
		t.Fatal(err)
	}
	if _, err := add(""); err == nil || !strings.Contains(err.Error(), "rotator") {
		t.Fatalf("add on an etcd ring: %v", err)
	}
	if _, err := retire("00"); err == nil || !strings.Contains(err.Error(), "rotator") {
		t.Fatalf("retire on an etcd ring: %v", err)
	}
	if len(ring.Keys()) != 0 {
		t.Fatal("a key was added")
	}
}
