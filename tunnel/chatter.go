package tunnel

import "net/netip"

// linkChatter reports whether a packet the kernel wrote to the TUN device
// for dst, which no peer routes, is the kernel's own talk to its link
// neighbours rather than traffic someone sent: IPv6 multicast of interface-
// or link-local scope (ff01::/16, ff02::/16), e.g. the MLD reports (to
// ff02::16) a forwarding host sends for the all-routers groups it joins on
// every device. A tunnel has no link neighbours; counting these as no_route
// would make a healthy tunnel look lossy. They are dropped uncounted, as
// before; a peer whose allowed_ips include such a prefix still gets them.
func linkChatter(dst netip.Addr) bool {
	if !dst.Is6() || dst.Is4In6() {
		return false
	}
	b := dst.As16()
	return b[0] == 0xff && (b[1]&0x0f == 1 || b[1]&0x0f == 2)
}
