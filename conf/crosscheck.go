package conf

import (
	"fmt"
	"net/netip"

	"stunnel/handshake"
)

// crossCheck finds mistakes that involve more than one key: duplicates,
// overlaps, and the site-to-site errors that make traffic loop or vanish.
//
// Two peers' allowed_ips may not overlap, since an address would then
// belong to two peers, with one exception: a /0 overlaps only another /0.
// The routing table picks the longest match both ways, so a /0 (a full
// tunnel's head office, an exit) takes what no narrower prefix claims,
// and cannot send from an address a narrower prefix gives another peer; a
// branch can then reach a second site directly while everything else goes
// to the head office, as with WireGuard.
func (p *parser) crossCheck(c *Config) {
	in := &c.Interface
	line := func(i int, key string) int {
		if l, ok := p.lines[keyPath("peer", fmt.Sprint(i), key)]; ok {
			return l
		}
		return c.Peers[i].Line
	}
	byID := map[string]int{}
	for i, pr := range c.Peers {
		if pr.ID == "" {
			continue
		}
		if pr.ID == in.PeerID {
			p.addf(line(i, "id"), "peer id %q is this host's own peer_id", pr.ID)
		}
		if j, dup := byID[pr.ID]; dup {
			p.addf(line(i, "id"), "peer id %q is already used by the peer at line %d", pr.ID, c.Peers[j].Line)
		} else {
			byID[pr.ID] = i
		}
	}
	// Public keys are public: a map (first peer with each key) is fine
	// here, no constant-time comparison needed.
	byKey := make(map[handshake.PublicKey]int, len(c.Peers))
	for i, pr := range c.Peers {
		if pr.PublicKey.IsZero() {
			continue
		}
		if !in.PublicKey.IsZero() && pr.PublicKey.Equal(in.PublicKey) {
			p.addf(line(i, "public_key"), "%s", ownKeyMsg(pr.ID))
		}
		if j, dup := byKey[pr.PublicKey]; dup {
			p.addf(line(i, "public_key"), "public_key of peer %q is also the key of peer %q (line %d)", pr.ID, c.Peers[j].ID, c.Peers[j].Line)
		} else {
			byKey[pr.PublicKey] = i
		}
	}

	idx := newPrefixIndex(c)
	for i, pr := range c.Peers {
		for _, a := range pr.AllowedIPs {
			for _, r := range idx.overlapping(a, i) {
				j, b := r.peer, c.Peers[r.peer].AllowedIPs[r.pos]
				if (a.Bits() == 0) != (b.Bits() == 0) {
					continue // a /0 takes what no narrower prefix claims
				}
				p.addf(line(i, "allowed_ips"), "allowed_ips %s of peer %q overlaps %s of peer %q (line %d); each address must belong to one peer", a, pr.ID, b, c.Peers[j].ID, c.Peers[j].Line)
			}
			for _, own := range in.Addresses {
				// A /0 ("send everything to this peer") is deliberate, and
				// local routes keep our own address local; a narrower prefix
				// holding our address is the classic mistake of giving a peer
				// the whole overlay subnet.
				if a.Bits() > 0 && a.Contains(own.Addr()) {
					p.addf(line(i, "allowed_ips"), "allowed_ips %s of peer %q contains this host's own address %s; use the peer's address or subnets instead", a, pr.ID, own.Addr())
				}
			}
		}
		p.endpointLoop(c, idx, i, line(i, "endpoint"))
		p.groupLoops(c, idx, i, line(i, "endpoint"))
	}

	p.fullTunnelPort(c)

	if in.MTU < MinMTUIPv6 && c.UsesIPv6() {
		l, ok := p.lines["interface.mtu"]
		if !ok {
			l = 1
		}
		p.addf(l, "mtu %d is below %d, the IPv6 minimum, but IPv6 addresses are configured", in.MTU, MinMTUIPv6)
	}
}

// endpointLoop flags an endpoint that the tunnel itself would route: its
// encrypted packets would be sent into the tunnel they carry.
func (p *parser) endpointLoop(c *Config, idx *prefixIndex, i, line int) {
	pr := c.Peers[i]
	ap, err := netip.ParseAddrPort(pr.Endpoint)
	if err != nil {
		return // a DNS name, or already reported as malformed
	}
	a := ap.Addr().WithZone("")
	for _, own := range c.Interface.Addresses {
		if own.Addr() == a {
			p.addf(line, "endpoint %s of peer %q is this host's own overlay address; use the peer's underlay address", pr.Endpoint, pr.ID)
		}
	}
	// A /0 is a full tunnel (containing leaves it out): the daemon exempts
	// its own packets with a firewall mark and a routing table (tunnel/netcfg).
	for _, r := range idx.containing(a) {
		pfx := c.Peers[r.peer].AllowedIPs[r.pos]
		p.addf(line, "endpoint %s of peer %q lies inside allowed_ips %s of peer %q; its encrypted packets would be routed into the tunnel itself", pr.Endpoint, pr.ID, pfx, c.Peers[r.peer].ID)
	}
}

// UsesIPv6 reports whether c has an IPv6 address or allowed_ips: its
// device then needs an MTU of at least MinMTUIPv6, or the kernel turns
// IPv6 off on it and refuses its IPv6 addresses.
func (c *Config) UsesIPv6() bool {
	for _, a := range c.Interface.Addresses {
		if a.Addr().Is6() {
			return true
		}
	}
	for _, pr := range c.Peers {
		for _, a := range pr.AllowedIPs {
			if a.Addr().Is6() {
				return true
			}
		}
	}
	return false
}

// ownKeyMsg is the refusal of a [[peer]] that has this host's own public
// key, made by crossCheck for a key in the file and by SetTokenPublicKey for
// a token's: worded once, so the same mistake reads the same either way.
func ownKeyMsg(id string) string {
	return fmt.Sprintf("public_key of peer %q is this host's own public key", id)
}

// kernelTables are the routing tables the kernel itself uses.
var kernelTables = map[int]string{253: "default", 254: "main", 255: "local"}

// fullTunnelPort refuses a listen_port that would number a full tunnel's
// routing table and mark (cmd/stunnel fullTunnelTable) as one of the
// kernel's own tables: in main the default route exists already (up
// fails), in local it is looked up before the rule that exempts the
// tunnel's own packets (they loop into the tunnel).
func (p *parser) fullTunnelPort(c *Config) {
	name, reserved := kernelTables[c.Interface.ListenPort]
	if !reserved {
		return
	}
	for _, pr := range c.Peers {
		for _, a := range pr.AllowedIPs {
			if a.Bits() == 0 {
				p.addf(p.lines["interface.listen_port"], "listen_port %d also numbers the routing table and firewall mark of the full tunnel (allowed_ips %s of peer %q), and table %d is the kernel's %s table; choose another port",
					c.Interface.ListenPort, a, pr.ID, c.Interface.ListenPort, name)
				return
			}
		}
	}
}
