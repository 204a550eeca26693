package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/statefile"
	"stunnel/tickets"
)

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
	tk := testTickets
	tk.KeyFile = keyFile
	cfg := &conf.Config{Tickets: tk}
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

// The state file's CleanStop decides whether its sessions may come back:
// takeState tells the device to restore a state saved while running with
// its tickets only (tunnel.Options.RestoreTicketsOnly), and one saved at a
// clean stop in full.
func TestTakeStateSaysWhenTicketsOnly(t *testing.T) {
	priv, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := handshake.MemoryKey(priv)
	cfg := &conf.Config{}
	cfg.Interface.StateFile = filepath.Join(t.TempDir(), "st0.state")
	log := slog.New(slog.DiscardHandler)
	for _, clean := range []bool{false, true} {
		if err := statefile.Save(cfg.Interface.StateFile, key, statefile.Payload{Data: []byte("state"), CleanStop: clean}); err != nil {
			t.Fatal(err)
		}
		data, ticketsOnly := takeState(cfg, key, log)
		if string(data) != "state" || ticketsOnly == clean {
			t.Fatalf("saved with CleanStop %v: data %q, ticketsOnly %v", clean, data, ticketsOnly)
		}
	}
}

// A restart never lengthens a key's life (docs/CONFIGURATION.md, State
// file): a restored key's age is now minus its saved creation time, by the
// wall clock, the only one that survives a restart. A clock stepped back
// across the restart makes that age too small by the step, and only a step
// past the key's creation was caught (rekey.ErrStateClock). The file says
// when it was written: a time after now means the clock went back since the
// stop, by more than the restart took, so the keys' ages are unknown and
// only the tickets may come back.
func TestTakeStateWrittenLaterThanNowRestoresTicketsOnly(t *testing.T) {
	priv, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := handshake.MemoryKey(priv)
	cfg := &conf.Config{}
	cfg.Interface.StateFile = filepath.Join(t.TempDir(), "st0.state")
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		written     time.Duration // from now
		ticketsOnly bool
	}{{-time.Minute, false}, {time.Minute, true}} {
		b, err := statefile.Seal(key, statefile.Payload{Data: []byte("state"), CleanStop: true}, time.Now().Add(tc.written))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Interface.StateFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
		data, ticketsOnly := takeState(cfg, key, log)
		if string(data) != "state" || ticketsOnly != tc.ticketsOnly {
			t.Fatalf("clean stop written %v from now: data %q, ticketsOnly %v; want %v", tc.written, data, ticketsOnly, tc.ticketsOnly)
		}
	}
}
