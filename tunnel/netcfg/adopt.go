package netcfg

import (
	"net/netip"

	"github.com/vishvananda/netlink"
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
