package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routedHere reports whether the kernel already routes exactly p through
// this device. On a device kept across a restart (systemd's descriptor
// store) the previous run's routes are still there: SetRoutes then takes
// such a route as its own, so a later reload or Remove manages it like one
// it added. A route for p through another interface is still a conflict.
func (l *Link) routedHere(p netip.Prefix) bool {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	rs, err := l.h.RouteListFiltered(family, &netlink.Route{LinkIndex: l.link.Attrs().Index, Dst: ipNet(p)},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	return err == nil && len(rs) > 0
}

// Prune removes from a device kept across a restart what the previous run
// configured and this one does not: addresses not in addrs (IPv6 link-local
// ones, which the kernel makes, stay) and static link-scope routes through
// the device that are neither this Link's routes nor the connected prefix of
// an address (a peer removed from the config between the two runs). Call it
// after Apply, only on an inherited device: there every such route was put
// there by stunnel. The error names the first item it could not remove.
func (l *Link) Prune(addrs []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var firstErr error
	note := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	have, err := l.h.AddrList(l.link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("%s: listing addresses: %v", l.name, err)
	}
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() || slices.Contains(addrs, p) {
			continue
		}
		if err := l.h.AddrDel(l.link, &a); err != nil && !gone(err) {
			note(fmt.Errorf("%s: removing stale address %s: %v", l.name, p, err))
		}
	}
	// Deleting a primary IPv4 address takes the secondaries of its subnet
	// with it (promote_secondaries is off by default): put back any of ours
	// that went.
	if have, err = l.h.AddrList(l.link, netlink.FAMILY_ALL); err != nil {
		return errors.Join(firstErr, fmt.Errorf("%s: listing addresses: %v", l.name, err))
	}
	for _, want := range addrs {
		if slices.ContainsFunc(have, func(a netlink.Addr) bool { p, ok := prefixOf(a.IPNet); return ok && p == want }) {
			continue
		}
		na := &netlink.Addr{IPNet: ipNet(want)}
		if want.Addr().Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := l.h.AddrAdd(l.link, na); err != nil {
			note(fmt.Errorf("%s: restoring address %s: %v", l.name, want, err))
			continue
		}
		l.addrs = append(l.addrs, want)
	}
	// And a device left without IPv4 addresses for a moment loses its IPv4
	// routes: put back any of ours that went.
	for _, p := range l.routes {
		if !l.routedHere(p) {
			if err := l.h.RouteAdd(l.route(p)); err != nil && !errors.Is(err, unix.EEXIST) {
				note(fmt.Errorf("%s: restoring route %s: %v", l.name, p, err))
			}
		}
	}
	rs, err := l.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.link.Attrs().Index},
		netlink.RT_FILTER_OIF)
	if err != nil {
		return errors.Join(firstErr, fmt.Errorf("%s: listing routes: %v", l.name, err))
	}
	for _, r := range rs {
		p, ok := prefixOf(r.Dst)
		// Only routes like the ones route() makes: static (boot), link
		// scope, main table. Kernel routes (connected, link-local) differ.
		// The scope tells only for IPv4: the kernel reports every IPv6
		// route as universe scope (rt6_fill_node), whatever it was added
		// with, so requiring link scope kept a removed peer's IPv6 route.
		if !ok || r.Protocol != unix.RTPROT_BOOT || r.Table != unix.RT_TABLE_MAIN ||
			(p.Addr().Is4() && r.Scope != netlink.SCOPE_LINK) {
			continue
		}
		if _, ours := slices.BinarySearchFunc(l.routes, p, comparePrefix); ours || slices.Contains(l.skip, p) {
			continue
		}
		if err := l.delRoute(p); err != nil {
			note(fmt.Errorf("%s: removing stale route %s: %v", l.name, p, err))
		}
	}
	return firstErr
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}
