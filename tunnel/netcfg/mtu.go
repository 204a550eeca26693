package netcfg

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Per-packet overhead of the tunnel on the underlay, from docs/PROTOCOL.md
// section 5: the transport-data header (type, receiver index, counter: 16
// bytes) and the AEAD tag (16 bytes), inside UDP (8) inside the outer IP
// header (IPv4 20, IPv6 40). No padding. An inner packet of MTU bytes makes
// an outer one of MTU + overhead.
const (
	dataOverhead = 16 + 16 + 8
	Overhead4    = dataOverhead + 20 // 60
	Overhead6    = dataOverhead + 40 // 80
)

// Overhead is the per-packet overhead toward an endpoint address.
func Overhead(endpoint netip.Addr) int {
	if endpoint.Is4() || endpoint.Is4In6() {
		return Overhead4
	}
	return Overhead6
}

// PathMTU is the MTU of the route the kernel would use to reach dst (an
// unspecified dst: the default route) for a packet with firewall mark mark
// (0: none): the route's own mtu if it has one, else its device's MTU. It
// asks in the caller's network namespace. A full tunnel's daemon passes its
// socket's mark: the tunnel's own rules, still in place when systemd kept
// the device across a restart, would otherwise answer with the tunnel.
func PathMTU(dst netip.Addr, mark uint32) (mtu int, dev string, err error) {
	return pathMTU(&netlink.Handle{}, dst, mark)
}

func pathMTU(h *netlink.Handle, dst netip.Addr, mark uint32) (int, string, error) {
	ip := dst.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		// The default route: ask for a documentation address (RFC 5737 /
		// 3849) that only a default route covers; nothing is sent.
		ip = netip.MustParseAddr("192.0.2.1")
		if dst.Is6() && !dst.Is4In6() {
			ip = netip.MustParseAddr("2001:db8::1")
		}
	}
	routes, err := h.RouteGetWithOptions(ip.AsSlice(), &netlink.RouteGetOptions{Mark: mark})
	if err != nil {
		return 0, "", fmt.Errorf("no route to %s: %v", ip, err)
	}
	if len(routes) == 0 {
		return 0, "", fmt.Errorf("no route to %s", ip)
	}
	r := routes[0]
	link, err := h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return 0, "", fmt.Errorf("route to %s: device %d: %v", ip, r.LinkIndex, err)
	}
	if r.MTU > 0 {
		return r.MTU, link.Attrs().Name, nil
	}
	return link.Attrs().MTU, link.Attrs().Name, nil
}
