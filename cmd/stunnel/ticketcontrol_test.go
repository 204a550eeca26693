package main

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/tickets"
	"stunnel/tunnel/control"
)

// `tickets add` on a running tunnel takes no key: it adds a fresh random
// key to that gateway's ring only. One given anyway (a shared key an
// officer meant for a gateway group, a mistyped key file, garbage) is
// refused, never silently replaced, and never echoed. A key on argv would
// also be in /proc/PID/cmdline for anyone to read.
func TestTicketsAddRefusesKeyArgument(t *testing.T) {
	const given = "SECRETKEYMATERIAL0123456789abcdefghij="
	cfg := &conf.Config{Tickets: testTickets}
	ring := tickets.NewRing(tickets.Options{EncryptDecryptLifetime: 2 * time.Hour, DecryptLifetime: 13 * time.Hour, ReauthAfter: 24 * time.Hour})
	_, add, _ := ticketHandlers(ring, newRunningConfig(cfg))
	before := len(ring.Keys())
	if out, err := add(given); err == nil || strings.Contains(err.Error(), given[:6]) || !strings.Contains(err.Error(), "key_file") || out != nil {
		t.Errorf("daemon: tickets add with a key: reply %q, err %v; want refused, naming key_file, not echoing the key", out, err)
	}
	if n := len(ring.Keys()); n != before {
		t.Errorf("daemon: refused tickets add changed the ring: %d keys, had %d", n, before)
	}
	if _, err := add(""); err != nil || len(ring.Keys()) != before+1 {
		t.Errorf("daemon: tickets add without a key: err %v, %d keys, want %d", err, len(ring.Keys()), before+1)
	}

	// The CLI refuses before it connects (st9 does not run: a request
	// would fail with exit 1), with exit 2 and one line without the key.
	t.Setenv(control.RunDirEnv, t.TempDir())
	for _, args := range [][]string{{"tickets", "add", "-i", "st9", given}, {"tickets", "add", given, "-i", "st9"}, {"tickets", "add", given}} {
		stdout, stderr, code := runStunnel(t, "", args...)
		if code != exitBadConfig || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "takes no argument") || strings.Contains(stderr, given[:6]) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, one line, no key", args[2:], code, stdout, stderr)
		}
	}
}

// `tickets add` makes its key with the running config's lifetimes: the
// ones a reload set, not the start-up ones.
func TestTicketsAddUsesReloadedLifetimes(t *testing.T) {
	tk := func(ed, do time.Duration) *conf.Config {
		return &conf.Config{Tickets: conf.Tickets{Enabled: true, EncryptDecryptLifetime: ed, DecryptLifetime: do, ReauthAfter: 24 * time.Hour}}
	}
	running := newRunningConfig(tk(2*time.Hour, 13*time.Hour))
	ring := tickets.NewRing(tickets.Options{})
	_, add, _ := ticketHandlers(ring, running)
	running.Store(tk(time.Hour, 3*time.Hour)) // what run's loop does after a reload
	if _, err := add(""); err != nil {
		t.Fatal(err)
	}
	keys := ring.Keys()
	if len(keys) != 1 {
		t.Fatalf("%d keys after add, want 1", len(keys))
	}
	if ed, do := keys[0].EncryptUntil.Sub(keys[0].Created), keys[0].End.Sub(keys[0].EncryptUntil); ed != time.Hour || do != 3*time.Hour {
		t.Errorf("added key lives %v encrypt-decrypt and %v decrypt-only; want the reloaded 1h and 3h", ed, do)
	}
}

// testTickets is the [tickets] table of the tests below: on, lifetimes
// given, keys made in memory.
var testTickets = conf.Tickets{Enabled: true, EncryptDecryptLifetime: 2 * time.Hour, DecryptLifetime: 13 * time.Hour, ReauthAfter: 24 * time.Hour}

// keyFileConfigs writes a fresh ticket key file (`tickets genkey`) and
// returns its path with two [tickets] configs alike but for where the ring
// keeps its keys: in memory, or read from that key_file.
func keyFileConfigs(t *testing.T) (keyFile string, inMemory, fromFile *conf.Config) {
	t.Helper()
	keyFile = filepath.Join(t.TempDir(), "ticket.keys")
	var out, errb bytes.Buffer
	if code := runTickets([]string{"genkey", "-o", keyFile}, &out, &errb); code != exitOK {
		t.Fatalf("genkey: %d %s", code, errb.String())
	}
	tk := testTickets
	inMemory = &conf.Config{Tickets: tk}
	tk.KeyFile = keyFile
	fromFile = &conf.Config{Tickets: tk}
	return keyFile, inMemory, fromFile
}

// `tickets add` on a running tunnel whose ring comes from [tickets]
// key_file is refused: the next reload replaces the ring's keys with the
// file's (the added key would vanish), and the other gateways sharing the
// file never had it. The refusal is one line that names the file and says
// to edit it and reload; through the control socket it exits 1 (refused).
// Whether key_file is set is read from the running config per call, so a
// reload that adds key_file counts at once.
func TestTicketsAddRefusedForKeyFileRing(t *testing.T) {
	keyFile, inMemory, fromFile := keyFileConfigs(t)

	// Started without key_file, then reloaded with it (what run's loop
	// does: reloadTicketRing loads the file, running.Store).
	running := newRunningConfig(inMemory)
	ring, err := openTicketRing(inMemory)
	if err != nil {
		t.Fatal(err)
	}
	list, add, _ := ticketHandlers(ring, running)
	reloadTicketRing(ring, fromFile, false, nil, slog.New(slog.DiscardHandler))
	running.Store(fromFile)
	keys, err := tickets.ReadKeyFile(keyFile)
	if err != nil || len(keys) != 1 {
		t.Fatalf("key file: %d keys, %v", len(keys), err)
	}
	// The ring holds the file's key: "unchanged" below compares a real
	// listing, not two failures.
	before, err := list()
	if err != nil || !strings.Contains(string(before), keys[0].NameHex()) {
		t.Fatalf("after the reload with key_file, the ring lists %s (%v); want the file's key %s", before, err, keys[0].NameHex())
	}

	got, err := add("")
	if err == nil || got != nil || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "key_file "+keyFile) || !strings.Contains(err.Error(), "stunnel tickets add "+keyFile) || !strings.Contains(err.Error(), "reload") {
		t.Errorf("tickets add on a key_file ring: reply %q, err %v; want one line refusing, naming %s, saying to add the key to it and reload", got, err, keyFile)
	}
	if after, _ := list(); !bytes.Equal(after, before) {
		t.Errorf("refused tickets add changed the ring:\nbefore %s\nafter  %s", before, after)
	}

	// Through the control socket: exit 1, the daemon's line, nothing on stdout.
	t.Setenv(control.RunDirEnv, t.TempDir())
	listenControl(t, "st7", control.Handlers{TicketsAdd: add, Status: func() ([]byte, error) { return []byte(`{}`), nil }})
	code, stdout, stderr := admin("tickets add", "tickets add", "", "-i", "st7")
	if code != exitRuntime || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "key_file "+keyFile) {
		t.Errorf("stunnel tickets add -i st7: exit %d, stdout %q, stderr %q; want exit 1 and the one-line refusal", code, stdout, stderr)
	}

	// The refusal follows the running config, not the ring's past: after a
	// reload that drops key_file, add is allowed again.
	running.Store(inMemory)
	if _, err := add(""); err != nil {
		t.Errorf("tickets add after key_file was dropped: %v", err)
	}
}

// `tickets retire` on a running tunnel whose ring comes from [tickets]
// key_file is refused, as add is: a key retired in memory alone comes back
// at the next reload (the ring's keys become the file's), and the other
// gateways sharing the file still open its tickets. The refusal is one line
// that names the file (its path, not the key nor any secret) and says to
// edit it and reload; through the control socket it exits 1 (refused). The
// ring keeps every key. Whether key_file is set is read from the running
// config per call, so a reload that drops key_file allows retire again.
func TestTicketsRetireRefusedForKeyFileRing(t *testing.T) {
	keyFile, inMemory, fromFile := keyFileConfigs(t)
	keys, err := tickets.ReadKeyFile(keyFile)
	if err != nil || len(keys) != 1 {
		t.Fatalf("key file: %d keys, %v", len(keys), err)
	}
	name := keys[0].NameHex()
	secret := strings.Fields(strings.Split(string(tickets.MarshalKeyFile(keys)), "\n")[1])[1]

	// Started with key_file: the ring holds the file's key.
	running := newRunningConfig(fromFile)
	ring, err := openTicketRing(fromFile)
	if err != nil {
		t.Fatal(err)
	}
	list, _, retire := ticketHandlers(ring, running)
	before, _ := list()
	if !strings.Contains(string(before), name) {
		t.Fatalf("the ring does not hold the file's key %s: %s", name, before)
	}

	got, err := retire(name)
	if err == nil || got != nil || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "key_file "+keyFile) || !strings.Contains(err.Error(), "reload") ||
		strings.Contains(err.Error(), name) || strings.Contains(err.Error(), secret) {
		t.Errorf("tickets retire on a key_file ring: reply %q, err %v; want one line refusing, naming %s (and no key), saying to edit it and reload", got, err, keyFile)
	}
	if after, _ := list(); !bytes.Equal(after, before) {
		t.Errorf("refused tickets retire changed the ring:\nbefore %s\nafter  %s", before, after)
	}

	// Through the control socket: exit 1, the daemon's line, nothing on stdout.
	t.Setenv(control.RunDirEnv, t.TempDir())
	listenControl(t, "st8", control.Handlers{TicketsRetire: retire, Status: func() ([]byte, error) { return []byte(`{}`), nil }})
	code, stdout, stderr := admin("tickets retire", "tickets retire", "KEY-ID", "-i", "st8", name)
	if code != exitRuntime || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "key_file "+keyFile) {
		t.Errorf("stunnel tickets retire -i st8 %s: exit %d, stdout %q, stderr %q; want exit 1 and the one-line refusal", name, code, stdout, stderr)
	}
	if after, _ := list(); !bytes.Equal(after, before) {
		t.Errorf("refused tickets retire through the socket changed the ring:\nbefore %s\nafter  %s", before, after)
	}

	// The refusal follows the running config, not the ring's past: after a
	// reload that drops key_file, retire is allowed again.
	running.Store(inMemory)
	if after, err := retire(name); err != nil || strings.Contains(string(after), name) {
		t.Errorf("tickets retire after key_file was dropped: %s, %v; want the key gone", after, err)
	}
}

// `tickets list` of a ring with no key (the last one retired) is an empty
// JSON array, as with keys: `jq '.[]'` fails on null.
func TestTicketsListEmptyRing(t *testing.T) {
	running := newRunningConfig(&conf.Config{Tickets: testTickets})
	ring := tickets.NewRing(tickets.Options{})
	list, add, retire := ticketHandlers(ring, running)
	if got, err := list(); err != nil || string(got) != "[]" {
		t.Errorf("list of an empty ring: %q %v, want []", got, err)
	}
	if _, err := add(""); err != nil {
		t.Fatal(err)
	}
	if got, err := retire(ring.Keys()[0].Name); err != nil || string(got) != "[]" {
		t.Errorf("retire of the last key: %q %v, want []", got, err)
	}
}

// `tickets retire` of a name the ring does not hold names nothing: a 404,
// as a rekey of no such peer, not the 500 of a daemon that failed.
func TestTicketsRetireUnknownIsNotFound(t *testing.T) {
	_, _, retire := ticketHandlers(tickets.NewRing(tickets.Options{}), newRunningConfig(&conf.Config{Tickets: testTickets}))
	_, err := retire("00112233445566778899aabbccddeeff")
	if !errors.Is(err, control.ErrNotFound) || !strings.Contains(err.Error(), "no ticket key named 00112233445566778899aabbccddeeff") {
		t.Errorf("retire of an unknown key: %v; want ErrNotFound naming the key", err)
	}
}
