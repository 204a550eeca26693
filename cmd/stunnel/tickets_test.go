package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/tickets"
	"stunnel/tunnel/control"
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

// `tickets add` on a running tunnel takes no key: it adds a fresh random
// key to that gateway's ring only. One given anyway (a shared key an
// officer meant for a gateway group, a mistyped key file, garbage) is
// refused, never silently replaced, and never echoed. A key on argv would
// also be in /proc/PID/cmdline for anyone to read.
func TestTicketsAddRefusesKeyArgument(t *testing.T) {
	const given = "SECRETKEYMATERIAL0123456789abcdefghij="
	cfg := &conf.Config{Tickets: conf.Tickets{Enabled: true, EncryptDecryptLifetime: 2 * time.Hour, DecryptLifetime: 13 * time.Hour, ReauthAfter: 24 * time.Hour}}
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
	before, _ := list()

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

// A reload that drops [tickets] key_file leaves keys made in memory, as a
// start without it has: the ring makes a key when none seals. It used to
// stay in key-file mode, making none, so tickets stopped once the file's
// last key stopped sealing, with a log line saying to fix a key file that
// is no longer configured. The file's keys stay until they end (their
// tickets still open). A ring that follows etcd is not switched.
func TestReloadDroppingKeyFileMakesKeysInMemory(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "ticket.keys")
	old, err := tickets.GenerateKey(nil, time.Now().Add(-3*time.Hour), 2*time.Hour, 13*time.Hour) // decrypt-only now
	if err != nil {
		t.Fatal(err)
	}
	if err := tickets.WriteKeyFile(keyFile, []tickets.Key{old}); err != nil {
		t.Fatal(err)
	}
	tk := testTickets
	inMemory := &conf.Config{Tickets: tk}
	tk.KeyFile = keyFile
	fromFile := &conf.Config{Tickets: tk}
	seal := func(ring *tickets.Ring) error {
		_, err := ring.Seal(&handshake.TicketState{PeerID: "client", AuthTime: time.Now()})
		return err
	}
	log := slog.New(slog.DiscardHandler)

	for _, etcd := range []bool{false, true} {
		ring, err := openTicketRing(fromFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := seal(ring); !errors.Is(err, tickets.ErrNoTicketKey) {
			t.Fatalf("test setup: the file's only key is decrypt-only, yet Seal = %v", err)
		}
		reloadTicketRing(ring, inMemory, etcd, nil, log)
		err = seal(ring)
		switch {
		case !etcd && err != nil:
			t.Errorf("after a reload that dropped key_file: Seal = %v; want a key made in memory", err)
		case etcd && !errors.Is(err, tickets.ErrNoTicketKey):
			t.Errorf("etcd ring after a reload without key_file: Seal = %v; want no key made here (the rotator adds them)", err)
		}
		if !slices.ContainsFunc(ring.Keys(), func(k tickets.KeyInfo) bool { return k.Name == old.NameHex() }) {
			t.Errorf("etcd=%v: the file's key was dropped; its tickets would stop opening before its end", etcd)
		}
		ring.Close()
	}
}

// `tickets list` of a ring with no key (the last one retired) is an empty
// JSON array, as with keys: `jq '.[]'` fails on null.
func TestTicketsListEmptyRing(t *testing.T) {
	tk := testTickets
	running := newRunningConfig(&conf.Config{Tickets: tk})
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
	tk := testTickets
	_, _, retire := ticketHandlers(tickets.NewRing(tickets.Options{}), newRunningConfig(&conf.Config{Tickets: tk}))
	_, err := retire("00112233445566778899aabbccddeeff")
	if !errors.Is(err, control.ErrNotFound) || !strings.Contains(err.Error(), "no ticket key named 00112233445566778899aabbccddeeff") {
		t.Errorf("retire of an unknown key: %v; want ErrNotFound naming the key", err)
	}
}

// What of [tickets] a reload cannot change stays as it runs, and the log says
// it waits for a restart: tickets switched on when the tunnel started without
// them, and the ring moved between this host and etcd. Off applies at once
// (the tunnel's own test, TestReloadTicketsDisabledStopsResumption), so it is
// kept as given.
func TestReloadKeepsStartTickets(t *testing.T) {
	local := conf.Tickets{Enabled: true, KeyFile: "/etc/stunnel/ticket.keys"}
	etcd := conf.Tickets{Enabled: true, Ring: "etcd", GroupSecretFile: "/etc/stunnel/group.secret"}
	for _, c := range []struct {
		name               string
		was, now, want     conf.Tickets
		haveRing, etcdRing bool
		warn               string
	}{
		{"on without a ring", conf.Tickets{}, local, conf.Tickets{}, false, false, "enabled = true takes effect at the next restart"},
		{"off with a ring", local, conf.Tickets{KeyFile: local.KeyFile}, conf.Tickets{KeyFile: local.KeyFile}, true, false, ""},
		{"local to etcd", local, etcd, conf.Tickets{Enabled: true, KeyFile: local.KeyFile, GroupSecretFile: etcd.GroupSecretFile}, true, false, "ring changes take effect at the next restart"},
		{"etcd to local", etcd, local, conf.Tickets{Enabled: true, Ring: "etcd"}, true, true, "ring changes take effect at the next restart"},
		{"key file changed", local, conf.Tickets{Enabled: true, KeyFile: "/other"}, conf.Tickets{Enabled: true, KeyFile: "/other"}, true, false, ""},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		was, cfg := &conf.Config{Tickets: c.was}, &conf.Config{Tickets: c.now}
		keepStartTickets(was, cfg, c.haveRing, c.etcdRing, log)
		if cfg.Tickets != c.want {
			t.Errorf("%s: running [tickets] %+v, want %+v", c.name, cfg.Tickets, c.want)
		}
		if c.warn == "" && logs.Len() > 0 || c.warn != "" && !strings.Contains(logs.String(), c.warn) {
			t.Errorf("%s: logged %q, want %q", c.name, logs.String(), c.warn)
		}
	}
}

// A ring that follows etcd never takes a key file's keys at a reload: etcd's
// keys are the group's, and a file would replace them on this gateway only.
func TestReloadEtcdRingIgnoresKeyFile(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "ticket.keys")
	k, err := tickets.GenerateKey(nil, time.Now(), 2*time.Hour, 13*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := tickets.WriteKeyFile(keyFile, []tickets.Key{k}); err != nil {
		t.Fatal(err)
	}
	ring := tickets.NewRing(tickets.Options{})
	defer ring.Close()
	reloadTicketRing(ring, &conf.Config{Tickets: conf.Tickets{Enabled: true, KeyFile: keyFile}}, true, nil, slog.New(slog.DiscardHandler))
	if slices.ContainsFunc(ring.Keys(), func(ki tickets.KeyInfo) bool { return ki.Name == k.NameHex() }) {
		t.Error("an etcd ring took the key file's key at a reload")
	}
}

// A [tickets] key_file that lists no key is refused alike by `check` (exit
// 2, one line naming the file) and at the start of `up` (the same conf.Load,
// then openTicketRing), and at a reload: conf refuses the reload (logged
// once by reload) and the ring keeps its keys, or, when the file empties
// after conf read it (a cp over it under way), reloadTicketRing refuses it
// with one error naming the file and the ring keeps its keys. (`up` itself
// is not run here: where the file were accepted it would bring a tunnel up
// in the test's own network namespace.)
func TestKeylessKeyFileRefused(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ticket.keys")
	if err := os.WriteFile(keyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(dir, "st0.key")
	if err := os.WriteFile(priv, []byte(mustGenkey(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "st0.toml")
	src := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"st0.key\"\naddress = [\"198.19.0.1/24\"]\n" +
		"[tickets]\nkey_file = \"ticket.keys\"\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runStunnel(t, "", "check", "-c", path)
	if code != exitBadConfig || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "ticket key file "+keyFile+" lists no key") {
		t.Errorf("check with a keyless key file: exit %d, stdout %q, stderr %q; want exit 2 and one line naming %s", code, stdout, stderr, keyFile)
	}
	if _, err := conf.Load(path); err == nil || !strings.Contains(err.Error(), "ticket key file "+keyFile+" lists no key") {
		t.Errorf("conf.Load (up's first step) with a keyless key file: %v; want it refused, naming %s", err, keyFile)
	}
	cfg := &conf.Config{Tickets: conf.Tickets{Enabled: true, KeyFile: keyFile, EncryptDecryptLifetime: 2 * time.Hour, DecryptLifetime: 13 * time.Hour, ReauthAfter: 24 * time.Hour}}
	if ring, err := openTicketRing(cfg); err == nil || ring != nil || !strings.Contains(err.Error(), "[tickets] key_file: ticket key file "+keyFile+" lists no key") {
		t.Errorf("openTicketRing with a keyless key file: %v; want it refused, naming %s", err, keyFile)
	}

	// At a reload: the ring runs with the keys of a good file.
	var out, errb bytes.Buffer
	os.Remove(keyFile)
	if code := runTickets([]string{"genkey", "-o", keyFile}, &out, &errb); code != exitOK {
		t.Fatalf("genkey: %d %s", code, errb.String())
	}
	ring, err := openTicketRing(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := ring.Keys()
	if len(before) != 1 {
		t.Fatalf("ring from the key file: %d keys, want 1", len(before))
	}
	if err := os.WriteFile(keyFile, nil, 0o600); err != nil { // cp truncates first
		t.Fatal(err)
	}
	if _, err := conf.Load(path); err == nil || !strings.Contains(err.Error(), "lists no key") {
		t.Errorf("conf.Load with the keyless key file: %v; want it refused (reload logs that, once)", err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	// The reload conf refused: what reload returned, the running config.
	reloadTicketRing(ring, cfg, false, errors.New("reload refused"), log)
	if logs.Len() != 0 || !slices.Equal(ring.Keys(), before) {
		t.Errorf("after a refused reload: ring keys %v (want %v), logged %q (want nothing more: reload logged it)", ring.Keys(), before, logs.String())
	}
	// A reload conf accepted, the file emptied since.
	reloadTicketRing(ring, cfg, false, nil, log)
	if strings.Count(logs.String(), "\n") != 1 || !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), keyFile+" lists no key") {
		t.Errorf("reload of a keyless key file logged %q; want one error naming %s", logs.String(), keyFile)
	}
	if !slices.Equal(ring.Keys(), before) {
		t.Errorf("reload of a keyless key file: ring keys %v, want the running %v", ring.Keys(), before)
	}
}

// The stop run defers erases the ring's ticket-key secrets and closes it:
// before, a clean stop left them in memory (run never closed the ring).
// After it nothing seals, opens or takes a key again, whether the ring made
// its keys or read them from key_file. With resumption off there is no ring
// and the stop does nothing.
func TestStopTicketsClosesRing(t *testing.T) {
	_, inMemory, fromFile := keyFileConfigs(t)
	log := slog.New(slog.DiscardHandler)
	for name, cfg := range map[string]*conf.Config{"in memory": inMemory, "key_file": fromFile} {
		ring, rs, stop, err := startTickets(cfg, log)
		if err != nil || ring == nil || rs != nil {
			t.Fatalf("%s: startTickets: ring %v, sync %v, %v", name, ring, rs, err)
		}
		if err := ring.Rotate(time.Now()); err != nil {
			t.Fatal(err)
		}
		if len(ring.Keys()) != 1 {
			t.Fatalf("%s: %d keys before the stop, want 1", name, len(ring.Keys()))
		}
		stop()
		if n := len(ring.Keys()); n != 0 {
			t.Errorf("%s: the stop left %d ticket keys in the ring", name, n)
		}
		st := handshake.TicketState{PeerID: "b", AuthTime: time.Now()}
		if _, err := ring.Seal(&st); !errors.Is(err, tickets.ErrRingClosed) {
			t.Errorf("%s: Seal after the stop: %v; want ErrRingClosed", name, err)
		}
	}
	ring, rs, stop, err := startTickets(&conf.Config{}, log)
	if err != nil || ring != nil || rs != nil {
		t.Fatalf("tickets off: ring %v, sync %v, %v", ring, rs, err)
	}
	stop()
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
