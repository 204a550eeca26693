package main

import (
	"log/slog"
	"net/netip"

	"stunnel/conf"
	"stunnel/tunnel"
	"stunnel/tunnel/netcfg"
	"stunnel/tunnel/udpbind"
)

// mainRoutes are the allowed_ips routed through the device in the main
// table: all but the defaults, which setFullTunnel handles.
func mainRoutes(cfg *conf.Config) []netip.Prefix {
	rest, _, _ := netcfg.SplitDefaults(tunnel.Routes(cfg))
	return rest
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

// setFullTunnel makes the device the default route for each family a peer
// has a /0 for (docs/CONFIGURATION.md, "Full tunnel"), or takes it back:
// the UDP socket gets the mark that exempts the tunnel's own packets.
func setFullTunnel(cfg *conf.Config, link *netcfg.Link, bind *udpbind.Bind, res *endpointResolver, log *slog.Logger) error {
	_, v4, v6 := netcfg.SplitDefaults(tunnel.Routes(cfg))
	table := fullTunnelTable(cfg)
	if v4 || v6 {
		if err := bind.SetMark(uint32(table)); err != nil {
			return err
		}
		res.mark.Store(uint32(table))
	}
	if v4 {
		if err := netcfg.EnableSrcValidMark(); err != nil {
			log.Warn("full tunnel: cannot set net.ipv4.conf.all.src_valid_mark=1; with rp_filter on, replies may be dropped", "err", err)
		}
	}
	if err := link.SetFullTunnel(table, uint32(table), v4, v6); err != nil {
		return err
	}
	if v4 || v6 {
		log.Info("full tunnel: default route through the tunnel", "interface", cfg.Interface.Name,
			"ipv4", v4, "ipv6", v6, "table", table, "fwmark", table)
	}
	return nil
}
