package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"syscall"

	"stunnel/conf"
	"stunnel/tunnel"
	"stunnel/tunnel/control"
	"stunnel/tunnel/netcfg"
	"stunnel/tunnel/tundev"
	"stunnel/tunnel/udpbind"
)

// cmdUp runs the tunnel in the foreground until SIGTERM or SIGINT; SIGHUP
// reloads the configuration, keeping the running one if the new one is bad.
func cmdUp(args []string) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	path := fs.String("c", "", "configuration file")
	if err := fs.Parse(args); err != nil || *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: stunnel up -c FILE")
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
	if path := os.Getenv("STUNNEL_CPUPROFILE"); path != "" {
		// For docs/PERFORMANCE.md: a CPU profile of the whole run, written
		// at a clean stop; read it with `go tool pprof`.
		if stop, err := startCPUProfile(path); err != nil {
			log.Warn("cannot start CPU profile", "path", path, "err", err)
		} else {
			defer stop()
		}
	}
	if err := run(cfg, log, level); err != nil {
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
func run(cfg *conf.Config, log *slog.Logger, level *slog.LevelVar) (err error) {
	name := cfg.Interface.Name
	// Catch signals before anything exists, so a stop during start-up still
	// runs the clean-up below.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	dev, err := tundev.Create(name, cfg.Interface.MTU)
	if err != nil {
		return fmt.Errorf("%s: creating the TUN device: %w (is /dev/net/tun there, and do we have CAP_NET_ADMIN?)", name, err)
	}
	link, err := netcfg.Apply(name, cfg.Interface.MTU, cfg.Interface.Addresses, tunnel.Routes(cfg))
	if err != nil {
		dev.Close()
		return err
	}
	defer func() { err = errors.Join(err, link.Remove()) }()

	ring, err := ticketRingFromEnv() // TEMPORARY: [tickets] from h15 replaces it
	if err != nil {
		dev.Close()
		return err
	}
	d, err := tunnel.New(cfg, tunnel.Options{TUN: dev, Bind: udpbind.New(), Logger: log, Tickets: ring})
	if err != nil {
		dev.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { err = errors.Join(err, d.Close()) }()

	srv, err := control.Listen(name, func() ([]byte, error) { return json.Marshal(d.Status()) })
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()

	if err := sdNotify("READY=1"); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	log.Info("ready", "interface", name, "control_socket", control.SocketPath(name))
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
			_ = sdNotify("RELOADING=1")
			cfg = reload(cfg, d, link, log, level)
			_ = sdNotify("READY=1")
		}
	}
}

// reload applies the file's current contents, or logs why not and returns
// the running configuration unchanged.
func reload(running *conf.Config, d *tunnel.Device, link *netcfg.Link, log *slog.Logger, level *slog.LevelVar) *conf.Config {
	cfg, err := conf.Load(running.Path)
	if err != nil {
		log.Error("reload failed: keeping the running configuration", "problems", err.Error())
		return running
	}
	if err := d.Reload(cfg); err != nil {
		log.Error("reload failed: keeping the running configuration", "err", err.Error())
		return running
	}
	if err := link.SetRoutes(tunnel.Routes(cfg)); err != nil {
		log.Error("reload: updating routes failed", "err", err.Error())
	}
	if !slices.Equal(cfg.Interface.Addresses, running.Interface.Addresses) || cfg.Interface.MTU != running.Interface.MTU {
		log.Warn("reload: address and mtu changes take effect at the next restart",
			"running_addresses", fmt.Sprint(prefixStrings(running.Interface.Addresses)), "running_mtu", running.Interface.MTU)
	}
	level.Set(cfg.Interface.LogLevel)
	return cfg
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
