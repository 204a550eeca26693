package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/statefile"
	"stunnel/ticketring"
	"stunnel/tickets"
	"stunnel/tunnel"
	"stunnel/tunnel/control"
)

// What the daemon keeps across restarts and rekeys: the ticket-key ring
// ([tickets]) and the sealed state file ([interface] state_file). The
// session logic itself is package session's; this file only connects the
// config, the files and the control socket to it.

// openTicketRing builds the [tickets] ring: keys from key_file, or made in
// memory. nil when resumption is off.
func openTicketRing(cfg *conf.Config) (*tickets.Ring, error) {
	t := cfg.Tickets
	if !t.Enabled {
		return nil, nil
	}
	ring := tickets.NewRing(tickets.Options{EncryptDecryptLifetime: t.EncryptDecryptLifetime,
		DecryptLifetime: t.DecryptLifetime, ReauthAfter: t.ReauthAfter})
	if t.KeyFile != "" {
		if err := ring.LoadFile(t.KeyFile); err != nil {
			return nil, fmt.Errorf("[tickets] key_file: %w", err)
		}
	}
	return ring, nil
}

// keepStartTickets keeps in a reloaded configuration what of [tickets] a
// reload cannot change, and says so: tickets switched on for a tunnel that
// started without them (no ring exists to issue them), and the ring moved
// between this host and etcd (each is set up at start). The running
// configuration then says what runs, for `tickets add` and the next reload.
// Switching tickets off applies at once (tunnel.Device.Reload), and so does
// switching them back on when the start had them.
func keepStartTickets(was, cfg *conf.Config, haveRing, etcdRing bool, log *slog.Logger) {
	t := &cfg.Tickets
	if !haveRing {
		if t.Enabled {
			log.Warn("reload: [tickets] enabled = true takes effect at the next restart: the tunnel started without tickets")
		}
		cfg.Tickets = was.Tickets
		return
	}
	if (t.Ring == "etcd") != etcdRing {
		log.Warn("reload: [tickets] ring changes take effect at the next restart", "running_ring", cmp.Or(was.Tickets.Ring, "local"))
		t.Ring, t.KeyFile = was.Tickets.Ring, was.Tickets.KeyFile
	}
}

// startTickets opens the [tickets] ring (openTicketRing) and, with ring =
// "etcd", its sync with etcd (startTicketRing). ring is nil when resumption
// is off, rs when the ring is not in etcd. stop, which run defers, ends the
// sync first (it resigns, so another gateway rotates at once, and it is
// the last writer of the ring's keys), then closes the ring: that erases
// every ticket-key secret, which a clean stop would otherwise leave in
// memory. On error what was opened is closed.
func startTickets(cfg *conf.Config, log *slog.Logger) (ring *tickets.Ring, rs *ticketring.Sync, stop func(), err error) {
	ring, err = openTicketRing(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	rs, err = startTicketRing(cfg, ring, log)
	if err != nil {
		ring.Close()
		return nil, nil, nil, fmt.Errorf("[tickets] ring: %w", err)
	}
	stop = func() {
		if rs != nil {
			rs.Close()
		}
		ring.Close() // nil-safe: resumption off
	}
	return ring, rs, stop, nil
}

// reloadTicketRing applies a reload: lifetimes at once, the key file re-read
// (a bad file keeps the keys we have). etcd says the ring has followed etcd
// since the start ([tickets] ring = "etcd" is read at start only). rerr is
// the reload's own result: a refused reload keeps the whole running
// configuration, the ring's keys with it, and has already logged why. The
// file is not re-read then: a key file that does not parse or lists no key
// is one reason conf refuses a reload, and re-reading it would log the same
// refusal twice. It is still re-read after a reload conf accepted: the file
// may have changed since (a copy over it under way), and LoadFile refuses
// it then, once.
func reloadTicketRing(ring *tickets.Ring, cfg *conf.Config, etcd bool, rerr error, log *slog.Logger) {
	if ring == nil || rerr != nil {
		return
	}
	t := cfg.Tickets
	ring.Reconfigure(t.EncryptDecryptLifetime, t.DecryptLifetime, t.ReauthAfter)
	switch {
	case etcd: // its keys are etcd's (keepStartTickets kept ring = "etcd")
	case t.KeyFile != "":
		if err := ring.LoadFile(t.KeyFile); err != nil {
			log.Error("reload: ticket key file refused, keeping the keys in use", "file", t.KeyFile, "err", err.Error())
		}
	default:
		// Without key_file keys are made in memory: a reload that dropped
		// it must not leave a ring that never makes one, and stops issuing
		// tickets once the file's last key stops sealing.
		ring.UseMemoryKeys()
	}
}

// stateKey is the static key that seals the state file: the token key when
// the config names one (every derivation is then a token operation), else a
// copy of the key in memory (the config's own copy is zeroed once the device
// runs).
func stateKey(cfg *conf.Config, token handshake.StaticKey) statefile.StaticKey {
	if token != nil {
		return token
	}
	return handshake.MemoryKey(cfg.Interface.PrivateKey)
}

// takeState reads and consumes the state file at start: after it returns,
// the file is gone (fsynced), so it is restored at most once. A file that
// does not open is moved aside with one log line; start goes on with fresh
// handshakes. ticketsOnly: the state was saved while running, or the clock
// went back since it was written, and the device must restore its tickets
// only (tunnel.Options.RestoreTicketsOnly).
func takeState(cfg *conf.Config, key statefile.StaticKey, log *slog.Logger) (data []byte, ticketsOnly bool) {
	path := cfg.Interface.StateFile
	if path == "" {
		return nil, false
	}
	p, err := statefile.Take(path, key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false
	case err != nil:
		log.Warn("state file not restored: starting with fresh handshakes", "file", path, "reason", err.Error())
		return nil, false
	}
	if !p.CleanStop {
		log.Info("state file was saved while running: restoring its tickets only", "file", path)
		return p.Data, true
	}
	// A restored key's age is now minus its saved creation, on the wall
	// clock: a clock stepped back across the restart would lengthen its
	// life by the step. A file written later than now shows such a step
	// (larger than the restart took); the keys' ages are then unknown.
	if now := time.Now(); now.Before(p.Written) {
		log.Warn("state file was written later than now by this host's clock: the clock went back since the stop, "+
			"so the saved keys' ages are unknown; restoring its tickets only", "file", path,
			"written", p.Written.UTC().Format(time.RFC3339), "now", now.UTC().Format(time.RFC3339))
		return p.Data, true
	}
	return p.Data, false
}

// saveState seals what CloseAndSave (clean: sessions with exact counters)
// or SaveTickets (running: tickets only) returned.
func saveState(cfg *conf.Config, key statefile.StaticKey, data []byte, clean bool, log *slog.Logger) error {
	defer clear(data)
	path := cfg.Interface.StateFile
	if path == "" {
		return errors.New("no state_file configured")
	}
	// The default directory exists under systemd (StateDirectory=); make it
	// elsewhere, private.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving state to %s: %w", path, err)
	}
	if err := statefile.Save(path, key, statefile.Payload{Data: data, CleanStop: clean}); err != nil {
		return err // it names the file
	}
	log.Info("state saved", "file", path, "sessions", clean)
	return nil
}

// errTicketsAddArg refuses a key given to `tickets add` on a running tunnel.
// The command adds a fresh random key to this gateway's ring only, which no
// other gateway has: a group shares its keys through a key file or etcd.
var errTicketsAddArg = errors.New("tickets add takes no argument (the one given was not used and is not shown): " +
	"it adds a fresh random key to this gateway's ring only; a gateway group shares keys through [tickets] key_file " +
	"(stunnel tickets add FILE, copy FILE to each gateway, reload) or ring = \"etcd\"")

// ticketHandlers answers `stunnel tickets list|add|retire` for the officer.
// Whether the ring is in etcd is fixed at start (a change needs a restart:
// upticketring.go); add's lifetimes, and whether the ring comes from a key
// file (add and retire are refused then), are the running config's, read per
// call.
func ticketHandlers(ring *tickets.Ring, running *runningConfig) (list func() ([]byte, error), add func(string) ([]byte, error), retire func(string) ([]byte, error)) {
	if ring == nil {
		off := errors.New("session tickets are off ([tickets] enabled = false)")
		return func() ([]byte, error) { return nil, off },
			func(string) ([]byte, error) { return nil, off },
			func(string) ([]byte, error) { return nil, off }
	}
	keys := func() ([]byte, error) {
		out := []tunnel.TicketKeyStatus{} // [] when empty, not null: scripts iterate it
		for _, k := range ring.Keys() {
			out = append(out, tunnel.TicketKeyStatus{Name: k.Name, State: k.State.String(), EncryptUntil: k.EncryptUntil, End: k.End})
		}
		return json.Marshal(out)
	}
	list = keys
	if running.Load().Tickets.Ring == "etcd" {
		// The group's elected rotator adds and deletes keys in etcd; a key
		// added here alone would seal tickets no other gateway opens.
		etcd := errors.New("the ticket ring is in etcd ([tickets] ring = \"etcd\"): the group's elected rotator adds and retires keys; see stunnel show")
		return list, func(string) ([]byte, error) { return nil, etcd }, func(string) ([]byte, error) { return nil, etcd }
	}
	add = func(arg string) ([]byte, error) {
		if arg != "" {
			// An older client, or a raw request: refused, not replaced by a
			// random key the officer did not ask for (nor echoed).
			return nil, errTicketsAddArg
		}
		t := running.Load().Tickets
		if t.KeyFile != "" {
			// A reload re-reads the file and replaces the ring's keys with
			// its own (reloadTicketRing): a key added here alone would be
			// dropped then, and the other gateways sharing the file never
			// had it. Read per call: a reload may add or drop key_file.
			return nil, fmt.Errorf("the ticket ring is loaded from [tickets] key_file %s: add a key to that file "+
				"(stunnel tickets add %s), copy it to every gateway sharing it and reload them", t.KeyFile, t.KeyFile)
		}
		k, err := tickets.GenerateKey(nil, time.Now(), t.EncryptDecryptLifetime, t.DecryptLifetime)
		if err != nil {
			return nil, err
		}
		if err := ring.Add(k); err != nil {
			return nil, err
		}
		return keys()
	}
	retire = func(name string) ([]byte, error) {
		if f := running.Load().Tickets.KeyFile; f != "" {
			// As for add: a reload re-reads the file and the key retired
			// here alone comes back, and the other gateways sharing the
			// file still open its tickets. Read per call. The argument is
			// not echoed: only the file's path is named.
			return nil, fmt.Errorf("the ticket ring is loaded from [tickets] key_file %s: remove the key's line from that file, "+
				"copy it to every gateway sharing it and reload them", f)
		}
		if err := ring.Retire(name); err != nil {
			return nil, control.NotFound(err) // its one error: no key of that name
		}
		return keys()
	}
	return list, add, retire
}
