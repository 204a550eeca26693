package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"stunnel/conf"
	"stunnel/tunnel"
	"stunnel/tunnel/netcfg"
	"stunnel/tunnel/udpbind"
)

// mainRoutes are the allowed_ips routed through the device in the main
// table: all but the defaults. A file peer's default is a full tunnel
// (fullTunnelFamilies); a directory peer's is not routed at all.
func mainRoutes(cfg *conf.Config) []netip.Prefix {
	rest, _, _ := netcfg.SplitDefaults(tunnel.Routes(cfg))
	return rest
}

// fullTunnelFamilies is the families cfg's full tunnel covers: those a
// [[peer]] of the file has a /0 for. A directory peer's /0 counts for
// nothing here, whatever cfg merged: whoever can write to etcd must not be
// able to take all of a host's traffic, so an exit is something the host
// opts into in its own file (as a Tailscale client picks its exit node
// locally). That peer still has its /0 in the device: it may send from any
// address and gets what the host routes into the device anyway.
func fullTunnelFamilies(cfg *conf.Config) (v4, v6 bool) {
	for _, p := range cfg.Peers {
		if p.FromDirectory {
			continue
		}
		for _, pfx := range p.AllowedIPs {
			if pfx.Bits() == 0 {
				v4, v6 = v4 || pfx.Addr().Is4(), v6 || !pfx.Addr().Is4()
			}
		}
	}
	return v4, v6
}

// withoutRoutedDefaults is cfg as the device may run it while the full
// tunnel routes families v4 and v6 into it: each directory peer's /0 of
// such a family is left out, as that peer would get all of the family's
// traffic, which only the file may hand out (fullTunnelFamilies). They meet
// only in a reload whose file drops its /0 as a record's /0 of that family
// becomes usable, until the family is gone (applyReload), or after the
// family failed to go. held says whether anything was left out; then out
// is a copy, whose secrets the caller zeroes once the device has them.
func withoutRoutedDefaults(cfg *conf.Config, v4, v6 bool) (out *conf.Config, held bool) {
	routed := routedDefault(v4, v6)
	out = cfg
	for i, p := range cfg.Peers {
		if !p.FromDirectory || !slices.ContainsFunc(p.AllowedIPs, routed) {
			continue
		}
		if !held {
			c := *cfg
			c.Peers = slices.Clone(cfg.Peers)
			out, held = &c, true
		}
		out.Peers[i].AllowedIPs = slices.DeleteFunc(slices.Clone(p.AllowedIPs), routed)
	}
	return out, held
}

// routedDefault reports whether a prefix is the /0 of a family v4, v6 select.
func routedDefault(v4, v6 bool) func(netip.Prefix) bool {
	return func(pfx netip.Prefix) bool {
		return pfx.Bits() == 0 && (pfx.Addr().Is4() && v4 || pfx.Addr().Is6() && v6)
	}
}

// holdsDirectoryDefault reports whether withoutRoutedDefaults(cfg, v4, v6)
// would leave anything out, without making its copy.
func holdsDirectoryDefault(cfg *conf.Config, v4, v6 bool) bool {
	routed := routedDefault(v4, v6)
	return slices.ContainsFunc(cfg.Peers, func(p conf.Peer) bool {
		return p.FromDirectory && slices.ContainsFunc(p.AllowedIPs, routed)
	})
}

// fullTunnelTable is the routing table and socket mark of a full tunnel:
// the listen port, as wg-quick picks 51820 for wg0, so two tunnels of one
// host do not share one.
func fullTunnelTable(cfg *conf.Config) int {
	if p := cfg.Interface.ListenPort; p > 0 {
		return p
	}
	return netcfg.DefaultFullTunnelTable
}

// addFullTunnel makes the device the default route for each family of
// fullTunnelFamilies(cfg) (docs/CONFIGURATION.md, "Full tunnel") that the link
// does not route yet, in table (also the socket mark): the UDP socket and
// the resolver first get the mark that exempts the tunnel's own packets,
// then the route and rules go in. It removes nothing: a family cfg no longer
// has is taken out by the reload once the device has dropped its peer
// (applyReload), so its traffic is never sent in the clear meanwhile.
//
// On error nothing it changed is left (the error says so if taking back
// failed too) but net.ipv4.conf.all.src_valid_mark, which stop leaves set
// too; on success undo takes back exactly what it added, mark included, for
// a reload whose next step fails.
func addFullTunnel(cfg *conf.Config, link *netcfg.Link, bind *udpbind.Bind, res *endpointResolver, table int, log *slog.Logger) (undo func() error, err error) {
	v4, v6 := fullTunnelFamilies(cfg)
	had4, had6 := link.FullTunnel()
	if (!v4 || had4) && (!v6 || had6) {
		return func() error { return nil }, nil
	}
	oldMark := res.mark.Load()
	setMark := func(mark uint32) error {
		if err := bind.SetMark(mark); err != nil {
			return err
		}
		res.mark.Store(mark)
		return nil
	}
	undo = func() error {
		return errors.Join(link.SetFullTunnel(table, uint32(table), had4, had6), setMark(oldMark))
	}
	if err := setMark(uint32(table)); err != nil {
		_ = setMark(oldMark) // one socket may have the new mark already
		return nil, err
	}
	if v4 && !had4 {
		// As wg-quick; it matters only where conntrack rules copy our mark
		// back onto replies, which stunnel does not install (the strict
		// rp_filter case is warned about below). Under the shipped unit
		// /proc/sys is read-only (ProtectKernelTunables), so it fails on
		// every start there: not worth a warning.
		if err := netcfg.EnableSrcValidMark(); err != nil {
			log.Info("full tunnel: net.ipv4.conf.all.src_valid_mark left as it is", "err", err)
		}
		warnStrictReversePath(netcfg.ProcIPv4Conf, cfg.Interface.Name, log)
	}
	// SetFullTunnel takes back the failing family's own steps, not the
	// other family's: undo does.
	if err := link.SetFullTunnel(table, uint32(table), v4 || had4, v6 || had6); err != nil {
		if uerr := undo(); uerr != nil {
			return nil, fmt.Errorf("%w; and taking back the rest of the full tunnel: %v", err, uerr)
		}
		return nil, err
	}
	log.Info("full tunnel: default route through the tunnel", "interface", cfg.Interface.Name,
		"ipv4", v4, "ipv6", v6, "table", table, "fwmark", table)
	return undo, nil
}

// warnStrictReversePath logs one line when strict reverse-path filtering
// (rp_filter=1, Fedora's and RHEL's default) is on for an interface the
// tunnel's replies may come in by: with the endpoint behind a gateway,
// every reply is dropped and no handshake completes, and nothing else
// would say why. stunnel leaves the host's sysctls and firewall alone (see
// netcfg.StrictReversePath); the line says what to set.
func warnStrictReversePath(confDir, ifname string, log *slog.Logger) {
	strict, err := netcfg.StrictReversePath(confDir, ifname)
	if err != nil || len(strict) == 0 {
		return
	}
	log.Warn("full tunnel: strict reverse-path filtering (rp_filter=1) drops the tunnel's replies when the endpoint is reached through a gateway; "+
		"set net.ipv4.conf.all.rp_filter=2 and net.ipv4.conf.IFACE.rp_filter=2 (loose) for the interfaces named", "interfaces", strings.Join(strict, ","))
}
