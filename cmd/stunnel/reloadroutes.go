package main

import (
	"fmt"
	"log/slog"
	"slices"

	"stunnel/conf"
	"stunnel/tunnel"
	"stunnel/tunnel/netcfg"
	"stunnel/tunnel/udpbind"
)

// applyPeers makes the device and the kernel's routes run cfg's peers, or
// neither: when it returns an error, the device's peers and the routes are
// as they were. link may be nil (in-process tests run without a kernel
// device); then only the device changes.
//
// Routes go first, in steps that can each be undone exactly, because adding
// a route is what fails in practice (another interface already routes the
// subnet: EEXIST), and the device's reload cannot be undone cleanly: going
// back to the old config would drop the sessions of every peer the new one
// removed or changed, and the running config's keys are zeroed once the
// device holds its copies (zeroConfigSecrets). So:
//
//  1. add the new routes and keep the old ones (SetRoutes of the union adds
//     and removes nothing else, and takes back its own adds if one fails);
//  2. reload the device; if it refuses, take the added routes back;
//  3. only then remove the routes that no peer has any more.
//
// Between 1 and 2 a new subnet is routed into the device before the device
// has its peer: those packets are dropped (no_route), never sent elsewhere.
//
// A directory peer's /0 of a family the full tunnel routes into the device
// is held back (withoutRoutedDefaults); routes are the same either way.
func applyPeers(d *tunnel.Device, link *netcfg.Link, cfg *conf.Config, log *slog.Logger) error {
	if link == nil {
		return d.Reload(cfg)
	}
	full4, full6 := link.FullTunnel()
	dev, held := withoutRoutedDefaults(cfg, full4, full6)
	if held {
		defer zeroConfigSecrets(dev) // its own copies
	}
	old := link.Routes()
	want := mainRoutes(cfg)
	if err := link.SetRoutes(append(slices.Clone(want), old...)); err != nil {
		return err // "st0: adding route 198.19.7.0/24: file exists (another interface routes it?)"
	}
	if err := d.Reload(dev); err != nil {
		if rerr := link.SetRoutes(old); rerr != nil {
			return fmt.Errorf("%w; and taking back the routes it added: %v", err, rerr)
		}
		return err
	}
	if err := link.SetRoutes(want); err != nil {
		// The device runs cfg already; a stale route only sends its
		// subnet into the device, which drops it (no peer has it).
		log.Warn("reload applied, but a route of a removed peer is still on the device; its packets are dropped", "err", err.Error())
	}
	return nil
}

// applyReload is applyPeers with the full tunnel (fulltunnel.go) in front,
// by the same rule: all of it or none. The full tunnel's new families go in
// first, because adding them is what fails (the tunnel's routing table
// already has a default route: another full tunnel, a wg-quick of the
// host), and they are undone exactly; if the peers and routes are then
// refused, they are taken back. A family no file peer has any more is
// removed last, once the device has dropped that peer's /0: removing it
// earlier would send that traffic out in the clear by the host's own
// default route meanwhile. A directory record's /0 keeps no family
// (fullTunnelFamilies): a reload whose file drops its /0 takes the family
// down as it would without the record, whose peer gets its /0 only once
// the family is gone (withoutRoutedDefaults). The other way round is not
// covered: when a file's /0 comes in while a record's /0 of that family
// runs, that record's peer gets the family's traffic from the moment the
// family goes in until applyPeers drops the record (the merge skips a
// record overlapping the file's /0), one device reload's time, as the
// family must go in first to be undone exactly.
//
// table is fixed for the tunnel's life (the running config's, as at start):
// the socket mark and the rules in place must keep agreeing.
func applyReload(d *tunnel.Device, link *netcfg.Link, bind *udpbind.Bind, res *endpointResolver, table int, cfg *conf.Config, log *slog.Logger) error {
	if link == nil {
		return applyPeers(d, link, cfg, log)
	}
	undo, err := addFullTunnel(cfg, link, bind, res, table, log)
	if err != nil {
		return err // "st0: full tunnel 0.0.0.0/0: adding the default route to table 51820: file exists (...)"
	}
	had4, had6 := link.FullTunnel()
	if err := applyPeers(d, link, cfg, log); err != nil {
		if uerr := undo(); uerr != nil {
			return fmt.Errorf("%w; and taking back the full tunnel it added: %v", err, uerr)
		}
		return err
	}
	v4, v6 := fullTunnelFamilies(cfg)
	if err := link.SetFullTunnel(table, uint32(table), v4, v6); err != nil {
		// The device runs cfg already and cannot go back (applyPeers).
		// What is left routes into the device, which drops it (no peer
		// has the /0; applyPeers held a directory peer's back): nothing
		// leaks, but that traffic stops.
		log.Error("reload applied, but a full tunnel no peer has any more is still in place; its traffic is dropped until a restart", "err", err.Error())
		return nil
	}
	// A family is gone: a directory peer's /0 that applyPeers held back
	// for it routes nothing now, and the peer may have it.
	if holdsDirectoryDefault(cfg, had4 && !v4, had6 && !v6) {
		if err := d.Reload(cfg); err != nil {
			log.Warn("reload applied, but a directory peer's /0 is not in the device until the next change", "err", err.Error())
		}
	}
	return nil
}
