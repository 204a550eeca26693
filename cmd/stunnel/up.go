package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"syscall"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/tunnel"
	"stunnel/tunnel/control"
	"stunnel/tunnel/metrics"
	"stunnel/tunnel/netcfg"
	"stunnel/tunnel/udpbind"
)

// cmdUp runs the tunnel in the foreground until SIGTERM or SIGINT; SIGHUP
// reloads the configuration, keeping the running one if the new one is bad.
func cmdUp(args []string) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	path := fs.String("c", "", "configuration `FILE`")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: stunnel up -c FILE   (runs the tunnel in the foreground; SIGHUP reloads, SIGTERM stops)")
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(os.Stderr, "stunnel up: no config given; use: stunnel up -c FILE")
		return exitBadConfig
	}
	cfg, err := conf.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitBadConfig
	}
	level := new(slog.LevelVar)
	level.Set(cfg.Interface.LogLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Keep only CAP_NET_ADMIN (CAP_NET_BIND_SERVICE for a low listen or
	// metrics port, CAP_CHOWN for the [control] groups' sockets):
	// re-executes on success (privileges_linux.go).
	c := cfg.Control
	socketGroups := c.Read.Name != "" || c.Operate.Name != "" || c.Officer.Name != ""
	if err := narrowPrivileges(boundPorts(cfg.Interface.ListenPort, cfg.Metrics.Listen), socketGroups); err != nil {
		log.Warn("running with more privileges than needed", "err", err.Error())
	}
	// A token key: conf names it, we open it. Only after the re-exec
	// above: a key opened before it was a login thrown away with the
	// process image (the token saw two logins per start, and a module's
	// descriptors without close-on-exec went into the new image). Nothing
	// is lost by waiting: the re-executed process opens the key before it
	// touches the system, and fails with the same line and exit code
	// (tokenOpenExit); and it must be able to open it with only the kept
	// capabilities anyway, to log in again after a token reset.
	key, closeKey, err := openStaticKey(cfg, log, func(line string) { log.Warn(line) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return tokenOpenExit(err)
	}
	defer closeKey()
	if path := os.Getenv("STUNNEL_CPUPROFILE"); path != "" {
		// For docs/PERFORMANCE.md: a CPU profile of the whole run, written
		// at a clean stop; read it with `go tool pprof`.
		if stop, err := startCPUProfile(path); err != nil {
			log.Warn("cannot start CPU profile", "path", path, "err", err)
		} else {
			defer stop()
		}
	}
	if err := run(cfg, key, log, level); err != nil {
		log.Error(err.Error())
		return exitRuntime
	}
	return exitOK
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// run brings the interface up, serves until a stop signal, and takes down
// everything it set up, in reverse order, whatever happens.
func run(cfg *conf.Config, key handshake.StaticKey, log *slog.Logger, level *slog.LevelVar) (err error) {
	name := cfg.Interface.Name
	// Catch signals before anything exists, so a stop during start-up still
	// runs the clean-up below.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Another daemon of this name (in another namespace sharing the run
	// directory): fail before the tunnel exists, not after it has
	// handshaken with the peers and taken the state file.
	if err := control.CheckFree(name); err != nil {
		return err
	}

	ds, err := startDirectory(cfg, key, log)
	if err != nil {
		return fmt.Errorf("%s: [directory]: %w", name, err)
	}
	if ds != nil {
		defer ds.Close()
		cfg = ds.initial()
	}

	cfg.Interface.MTU = chooseMTU(cfg, log)
	stored := takeStoredFDs(log) // systemd's descriptor store: device and sockets of the last run
	dev, inherited, err := openDevice(cfg, stored, log)
	if err != nil {
		return tunCreateError(name, err)
	}
	applyLink := func(c *conf.Config) (*netcfg.Link, error) {
		return netcfg.Apply(name, c.Interface.MTU, c.Interface.Addresses, mainRoutes(c))
	}
	var link *netcfg.Link
	if ds != nil {
		// A directory record whose route the kernel refuses is left out
		// (dirstart.go), not a reason to fail the start.
		cfg, link, err = ds.startLink(cfg, applyLink)
	} else {
		link, err = applyLink(cfg)
	}
	if err != nil {
		dev.Close()
		return err
	}
	if inherited { // drop what the last run configured and this config does not
		if err := link.Prune(cfg.Interface.Addresses); err != nil {
			log.Warn("cleaning the kept TUN device", "err", err.Error())
		}
		table := fullTunnelTable(cfg)
		v4, v6 := fullTunnelFamilies(cfg)
		if err := link.PruneFullTunnel(table, uint32(table), v4, v6); err != nil {
			log.Warn("removing the last run's full tunnel", "err", err.Error())
		}
	}
	// The device's addresses and routes (and the full tunnel's rules) stay
	// whenever the device outlives this process: systemd holds a copy of
	// it, adopted from its store or handed to it once ready (storeFDs). A
	// start that fails after adopting it is a restart loop under systemd
	// (Restart=on-failure, exit 1): removing them would send the tunnel's
	// traffic out in the clear until the next start puts them back.
	keepLink := inherited
	defer func() {
		if !keepLink {
			err = errors.Join(err, link.Remove())
		}
	}()
	bind, res := newBind(stored, log), &endpointResolver{}
	if _, err := addFullTunnel(cfg, link, baseBind(bind), res, fullTunnelTable(cfg), log); err != nil {
		dev.Close()
		return err
	}

	// The state file's key, made before the config's copy of the private
	// key is zeroed (a token key stays in the token).
	sealKey := stateKey(cfg, key)
	// Runs last of the defers below: the save at stop and the control
	// server (state save) use the key until then.
	defer handshake.ZeroMemoryKey(sealKey)
	ring, rs, stopTickets, err := startTickets(cfg, log)
	if err != nil {
		dev.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	// Deferred before the device, the control server and the metrics
	// server exist, so it runs after each is closed (defers run last
	// first): the device seals and opens tickets with the ring until
	// then, the officer's `tickets list|add|retire` reach it through the
	// control server, and the etcd sync writes its keys until stopTickets
	// ends it. The state save at stop does not use the ring: it seals with
	// sealKey and holds the tickets the peers gave us, not our keys. Then
	// stopTickets erases every ticket-key secret: a stop must not leave
	// them in memory.
	defer stopTickets()
	if rs != nil {
		ds.attachRing(rs, cfg.Tickets)
	}
	// Consumed before the device exists: a saved state is restored at most
	// once, whatever happens next (statefile.Take).
	saved, ticketsOnly := takeState(cfg, sealKey, log)
	d, err := tunnel.New(cfg, tunnel.Options{TUN: dev, Bind: bind, Logger: log, Resolve: res.resolve, StaticKey: key, Tickets: ring,
		RestoreState: saved, RestoreTicketsOnly: ticketsOnly})
	clear(saved)
	if err != nil {
		dev.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	if saved != nil {
		log.Info("state file: " + d.Restored().String())
	}
	defer func() {
		if cfg.Interface.StateFile == "" {
			err = errors.Join(err, d.Close())
			return
		}
		state, cerr := d.CloseAndSave()
		err = errors.Join(err, cerr)
		// The tunnel stopped cleanly either way: a state that cannot be
		// written costs the next start its handshakes, not this stop its
		// exit code.
		if serr := saveState(cfg, sealKey, state, true, log); serr != nil {
			log.Error("sessions not saved: the next start handshakes anew", "err", serr.Error())
		}
	}()
	zeroConfigSecrets(cfg) // the device has its own copies
	if ds != nil {
		ds.attach(d, link)
		defer ds.Close() // before the device closes: no directory apply on a closed device
	}

	// Control-socket reloads run here, on the loop below, like SIGHUP:
	// one reload at a time, and cfg has one owner.
	reloads := make(chan chan error)
	stopping := make(chan struct{})
	running := newRunningConfig(cfg) // what control handlers read; stored after each reload below
	collector := metrics.NewCollector(d.Status)
	metricsHandler := metrics.Handler(collector, log)
	srv, err := control.Listen(control.Config{
		Name:     name,
		Groups:   controlGroups(cfg.Control),
		Handlers: controlHandlers(d, ds, metricsHandler, reloads, stopping, running, sealKey, ring, log),
		Audit:    log,
		Log:      log,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	collector.CountControlRefused(srv.Refused)
	defer close(stopping) // before srv.Close: a waiting reload gives up
	if cfg.Metrics.Listen != "" {
		ms, err := metrics.Listen(cfg.Metrics.Listen, collector, log)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, ms.Close()) }()
		log.Info("serving metrics", "url", "http://"+ms.Addr().String()+"/metrics")
	}

	if err := sdNotify("READY=1"); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	logBindInheritance(bind, log)
	keepLink = storeFDs(dev, bind, log) || inherited
	log.Info("ready", "interface", name, "control_socket", control.SocketPath(name))
	// reloadAll is one reload, by SIGHUP or `stunnel reload`: the file is
	// applied (or refused, cfg kept) and what else follows the running
	// config is brought in line with it. The error is reload's, for
	// `stunnel reload`.
	reloadAll := func() error {
		_ = sdNotify("RELOADING=1")
		var rerr error
		was := cfg
		cfg, rerr = reload(cfg, d, link, baseBind(bind), res, log, level, ds)
		if cfg != was {
			keepStartTickets(was, cfg, ring != nil, rs != nil, log)
		}
		running.Store(cfg)
		reloadTicketRing(ring, cfg, rs != nil, rerr, log)
		ds.reloadRing(cfg)
		_ = sdNotify("READY=1")
		return rerr
	}
	for {
		select {
		case err := <-d.Failed():
			_ = sdNotify("STOPPING=1")
			return err
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("stopping", "signal", sig.String())
				_ = sdNotify("STOPPING=1")
				return nil
			}
			_ = reloadAll()
		case reply := <-reloads:
			reply <- reloadAll()
		}
	}
}

// reload applies the file's current contents, or logs why not and returns
// the running configuration unchanged, with the reason (for `stunnel reload`).
func reload(running *conf.Config, d *tunnel.Device, link *netcfg.Link, bind *udpbind.Bind, res *endpointResolver, log *slog.Logger, level *slog.LevelVar, ds *dirSync) (*conf.Config, error) {
	cfg, err := conf.Load(running.Path)
	if err == nil {
		err = reloadTokenPublicKey(cfg, running)
	}
	if err != nil {
		zeroConfigSecrets(cfg)
		log.Error("reload failed: keeping the running configuration", "problems", err.Error())
		return running, reloadProblem(err)
	}
	file := cfg
	// The full tunnel, the peers and their routes together, or none
	// (reloadroutes.go): a route or full-tunnel table the kernel refuses
	// keeps the running configuration whole.
	apply := func(cfg *conf.Config) error {
		return applyReload(d, link, bind, res, fullTunnelTable(running), cfg, log)
	}
	if ds != nil {
		defer ds.lock()()
		// The file's peers plus the directory's, less a record whose
		// route the kernel refuses.
		cfg, err = ds.applyMergedLocked(file, apply)
	} else {
		err = apply(cfg)
	}
	if err != nil {
		zeroConfigSecrets(cfg)
		if file != cfg { // the directory's merge was a copy; the file's own keys are not kept either
			zeroConfigSecrets(file)
		}
		log.Error("reload failed: keeping the running configuration", "err", err.Error())
		return running, fmt.Errorf("reload failed, running configuration kept: %w", err)
	}
	if ds != nil {
		ds.fileAppliedLocked(file)
	}
	zeroConfigSecrets(cfg) // the device has its own copies
	if !slices.Equal(cfg.Interface.Addresses, running.Interface.Addresses) || mtuChanged(running, cfg) {
		log.Warn("reload: address and mtu changes take effect at the next restart",
			"running_addresses", fmt.Sprint(prefixStrings(running.Interface.Addresses)), "running_mtu", running.Interface.MTU)
	}
	if cfg.Control != running.Control || cfg.Metrics != running.Metrics {
		log.Warn("reload: [control] and [metrics] changes take effect at the next restart")
	}
	// The sockets' groups and the metrics listener are the start's until a
	// restart: keep them in the running configuration, as the addresses
	// below, so every later reload says the change still waits.
	cfg.Control, cfg.Metrics = running.Control, running.Metrics
	if ds == nil && cfg.Directory != nil {
		// No watcher runs: one starts at the next restart only. Kept out
		// of the running configuration, so every later reload says so too.
		log.Warn("reload: [directory] was added; the directory starts at the next restart")
		cfg.Directory = nil
	}
	level.Set(cfg.Interface.LogLevel)
	// What runs is still the old addresses and MTU until a restart: keep
	// them in the running configuration, so a second reload compares with
	// (and reports) what the device really has.
	cfg.Interface.Addresses = running.Interface.Addresses
	cfg.Interface.MTU = running.Interface.MTU
	cfg.Interface.MTUAuto = running.Interface.MTUAuto
	// A reload may swap listen_port between 0 ("any") and the port bound
	// at start (tunnel.Device's fixedSettingsChanged allows both): keep the
	// start value, which numbers the full tunnel's table and mark
	// (fullTunnelTable) for the tunnel's life.
	cfg.Interface.ListenPort = running.Interface.ListenPort
	return cfg, nil
}

// tunCreateError explains a TUN device that could not be made. When an
// interface of that name exists, the kernel's EINVAL (it is of another
// kind: a veth, WireGuard's wg0, a TUN made with other flags) or EBUSY (a
// TUN device another process holds: another stunnel with this name,
// wireguard-go) is about the name, not /dev/net/tun or capabilities.
func tunCreateError(name string, err error) error {
	if _, ierr := net.InterfaceByName(name); ierr == nil {
		switch {
		case errors.Is(err, syscall.EBUSY):
			return fmt.Errorf("%s: creating the TUN device: %w: a TUN device named %s exists and another program holds it (another stunnel with this [interface] name? wireguard-go?); stop it, or choose another name", name, err, name)
		case errors.Is(err, syscall.EINVAL):
			return fmt.Errorf("%s: creating the TUN device: %w: an interface named %s exists and is not a TUN device we can use (ip -d link show %s); choose another [interface] name, or remove it", name, err, name, name)
		}
	}
	return fmt.Errorf("%s: creating the TUN device: %w (is /dev/net/tun there, and do we have CAP_NET_ADMIN?)", name, err)
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
