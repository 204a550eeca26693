package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A full tunnel (a [[peer]] of the config file with allowed_ips 0.0.0.0/0
// or ::/0; a directory peer's /0 never makes one) is done the way
// wg-quick does it, so it works on a host that already has a default route
// and never routes the tunnel's own UDP packets into itself:
//
//	ip route add default dev st0 table T         (our own table)
//	ip rule add not fwmark M table T             (everything unmarked uses it)
//	ip rule add table main suppress_prefixlength 0
//
// The daemon's UDP socket carries mark M (SO_MARK), so its encrypted packets
// skip table T and leave by the main table's default route. The second rule
// lets every main-table route more specific than a default (the LAN, the
// other peers' allowed_ips, the underlay) keep winning. Both rules and the
// table's route are removed on stop (Remove).

// DefaultFullTunnelTable is the routing table, and the firewall mark of the
// UDP socket, used when the listen port gives none (as wg-quick's 51820).
const DefaultFullTunnelTable = 51820

// SplitDefaults separates the default prefixes (0.0.0.0/0, ::/0) from the
// rest: the rest are routed in the main table (Apply, SetRoutes); a default
// is never routed there, only by the full tunnel the daemon may make for
// its family (SetFullTunnel).
func SplitDefaults(routes []netip.Prefix) (rest []netip.Prefix, v4, v6 bool) {
	for _, p := range routes {
		switch {
		case p.Bits() == 0 && p.Addr().Is4():
			v4 = true
		case p.Bits() == 0:
			v6 = true
		default:
			rest = append(rest, p)
		}
	}
	return rest, v4, v6
}

// fullTunnel is what SetFullTunnel installed for one family.
type fullTunnel struct {
	route *netlink.Route
	rules []*netlink.Rule
}

// SetFullTunnel makes the device the default route of each family asked
// for, through routing table table and rules that exempt packets marked
// mark; a family not asked for is taken back out. Idempotent; on failure
// what this call added for the family is removed again.
func (l *Link) SetFullTunnel(table int, mark uint32, v4, v6 bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var firstErr error
	for _, fam := range []struct {
		family int
		want   bool
	}{{netlink.FAMILY_V4, v4}, {netlink.FAMILY_V6, v6}} {
		var err error
		switch have := l.full[fam.family] != nil; {
		case fam.want && !have:
			err = l.addFullTunnel(fam.family, table, mark)
		case !fam.want && have:
			err = l.removeFullTunnel(fam.family)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// FullTunnel reports the families whose full tunnel SetFullTunnel has
// installed and not taken back.
func (l *Link) FullTunnel() (v4, v6 bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.full[netlink.FAMILY_V4] != nil, l.full[netlink.FAMILY_V6] != nil
}

func (l *Link) addFullTunnel(family, table int, mark uint32) error {
	if l.full == nil {
		l.full = map[int]*fullTunnel{}
	}
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	name := "0.0.0.0/0"
	if family == netlink.FAMILY_V6 {
		dst, name = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, "::/0"
	}
	ft := &fullTunnel{route: &netlink.Route{LinkIndex: l.link.Attrs().Index, Dst: dst, Table: table, Scope: netlink.SCOPE_LINK}}
	undo := func() {
		for _, r := range ft.rules {
			_ = l.h.RuleDel(r)
		}
		_ = l.h.RouteDel(ft.route)
	}
	if err := l.h.RouteAdd(ft.route); err != nil {
		hint := ""
		if errors.Is(err, syscall.EEXIST) {
			hint = fmt.Sprintf(" (routing table %d is in use: another full tunnel on this host?)", table)
		}
		return fmt.Errorf("%s: full tunnel %s: adding the default route to table %d: %v%s", l.name, name, table, err, hint)
	}
	notMarked := netlink.NewRule()
	notMarked.Family, notMarked.Table, notMarked.Mark, notMarked.Invert = family, table, mark, true
	suppress := netlink.NewRule()
	suppress.Family, suppress.Table, suppress.SuppressPrefixlen = family, unix.RT_TABLE_MAIN, 0
	for _, r := range []*netlink.Rule{notMarked, suppress} {
		if err := l.h.RuleAdd(r); err != nil {
			undo()
			return fmt.Errorf("%s: full tunnel %s: adding policy rule (%s): %v", l.name, name, describeRule(r), err)
		}
		ft.rules = append(ft.rules, r)
	}
	l.full[family] = ft
	return nil
}

func (l *Link) removeFullTunnel(family int) error {
	ft := l.full[family]
	if ft == nil {
		return nil
	}
	var firstErr error
	for _, r := range ft.rules {
		if err := l.h.RuleDel(r); err != nil && !gone(err) && firstErr == nil {
			firstErr = fmt.Errorf("%s: removing policy rule (%s): %v", l.name, describeRule(r), err)
		}
	}
	if err := l.h.RouteDel(ft.route); err != nil && !gone(err) && firstErr == nil {
		firstErr = fmt.Errorf("%s: removing the default route of table %d: %v", l.name, ft.route.Table, err)
	}
	delete(l.full, family)
	return firstErr
}

// removeAllFullTunnels is Remove's part; l.mu is held.
func (l *Link) removeAllFullTunnels() error {
	var firstErr error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if err := l.removeFullTunnel(fam); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func describeRule(r *netlink.Rule) string {
	if r.SuppressPrefixlen >= 0 {
		return fmt.Sprintf("table main suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	return fmt.Sprintf("not fwmark %d table %d", r.Mark, r.Table)
}

// EnableSrcValidMark sets net.ipv4.conf.all.src_valid_mark=1 in the
// caller's network namespace, as wg-quick does for an IPv4 full tunnel:
// reverse-path filtering then takes the socket's mark into account, so
// replies to our marked UDP packets are not dropped as martians.
func EnableSrcValidMark() error {
	return os.WriteFile("/proc/sys/net/ipv4/conf/all/src_valid_mark", []byte("1\n"), 0)
}
