package main

import (
	"log/slog"
	"net/netip"

	"stunnel/conf"
	"stunnel/tunnel/netcfg"
)

// underlayPath is the route toward one peer's endpoint.
type underlayPath struct {
	peer, endpoint, dev string
	mtu, overhead       int
}

// chooseMTU returns the TUN device's MTU. Without an mtu key it is derived
// as wg-quick does: the smallest underlay path MTU toward the peers' IP
// endpoints minus our exact overhead for that path's family (60 bytes over
// IPv4, 80 over IPv6: docs/PROTOCOL.md section 5); with no IP endpoint, the
// default route's MTU minus 80 (a roaming peer may come over IPv6). A
// configured mtu is kept, with a warning for every endpoint it does not
// fit through unfragmented.
func chooseMTU(cfg *conf.Config, log *slog.Logger) int {
	var mark uint32 // what the UDP socket will carry (addFullTunnel)
	if v4, v6 := fullTunnelFamilies(cfg); v4 || v6 {
		mark = uint32(fullTunnelTable(cfg))
	}
	var paths []underlayPath
	for _, p := range cfg.Peers {
		ap, err := netip.ParseAddrPort(p.Endpoint)
		if err != nil {
			continue // none (roaming) or a DNS name: not known before start
		}
		mtu, dev, err := netcfg.PathMTU(ap.Addr(), mark)
		if err != nil {
			log.Warn("mtu: cannot find the route to an endpoint", "peer", p.ID, "endpoint", p.Endpoint, "err", err)
			continue
		}
		paths = append(paths, underlayPath{p.ID, p.Endpoint, dev, mtu, netcfg.Overhead(ap.Addr())})
	}
	in := cfg.Interface
	if !in.MTUAuto {
		for _, u := range paths {
			if in.MTU+u.overhead > u.mtu {
				log.Warn("mtu: configured mtu plus the tunnel's overhead exceeds the underlay path MTU; larger packets will be fragmented or lost",
					"interface", in.Name, "mtu", in.MTU, "overhead", u.overhead, "peer", u.peer, "endpoint", u.endpoint,
					"underlay_device", u.dev, "path_mtu", u.mtu, "fits", u.mtu-u.overhead,
					"fix", "set mtu to the fitting value, or remove mtu to derive it")
			}
		}
		return in.MTU
	}
	best, from := 0, "endpoints"
	for _, u := range paths {
		if m := u.mtu - u.overhead; best == 0 || m < best {
			best = m
		}
	}
	if best == 0 {
		from = "default route"
		mtu, _, err := netcfg.PathMTU(netip.IPv4Unspecified(), mark)
		if err != nil {
			log.Info("mtu: no endpoint route or default route to derive it from; using the default",
				"interface", in.Name, "mtu", conf.DefaultMTU)
			return conf.DefaultMTU
		}
		best = mtu - netcfg.Overhead6
	}
	// With IPv6 the floor is IPv6's minimum link MTU: below it the kernel
	// refuses the device's IPv6 addresses and up fails. Larger packets are
	// then fragmented on the underlay, which beats no IPv6 at all.
	floor := conf.MinMTU
	if cfg.UsesIPv6() {
		floor = conf.MinMTUIPv6
	}
	if best < floor {
		log.Warn("mtu: the underlay MTU leaves too little room; using the smallest allowed", "interface", in.Name,
			"derived", best, "mtu", floor)
		best = floor
	}
	if best > conf.MaxMTU {
		best = conf.MaxMTU
	}
	log.Info("mtu derived from the underlay (no mtu in the config)", "interface", in.Name, "mtu", best, "from", from)
	return best
}

// mtuChanged reports whether a reload asks for a different MTU than the
// running one: a derived MTU stays derived, and is not a change.
func mtuChanged(running, next *conf.Config) bool {
	if next.Interface.MTUAuto {
		return !running.Interface.MTUAuto
	}
	return next.Interface.MTU != running.Interface.MTU
}
