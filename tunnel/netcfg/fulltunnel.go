package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
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
// table's route are removed on stop (Remove), except when systemd keeps the
// device across a restart: then the next run takes them over (addFullTunnel,
// PruneFullTunnel).

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
	for _, fam := range families(v4, v6) {
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
	name := "0.0.0.0/0"
	if family == netlink.FAMILY_V6 {
		name = "::/0"
	}
	ft := &fullTunnel{route: l.fullTunnelRoute(family, table)}
	undo := func() {
		for _, r := range ft.rules {
			_ = l.h.RuleDel(r)
		}
		_ = l.h.RouteDel(ft.route)
	}
	// A route or rule that exists already is taken over when it is exactly
	// ours: the daemon leaves them in place when systemd keeps the device
	// across a restart (so nothing leaves in the clear while no daemon
	// runs), and the rules, which belong to no device, outlive a full stop
	// too. A default route of another device in the table is a clash.
	if err := l.h.RouteAdd(ft.route); err != nil && !(errors.Is(err, syscall.EEXIST) && l.tableRoutesHere(family, table)) {
		hint := ""
		if errors.Is(err, syscall.EEXIST) {
			hint = fmt.Sprintf(" (routing table %d is in use: another full tunnel on this host?)", table)
		}
		return fmt.Errorf("%s: full tunnel %s: adding the default route to table %d: %v%s", l.name, name, table, err, hint)
	}
	for _, r := range fullTunnelRules(family, table, mark) {
		// The kernel numbers a rule added without a priority below the
		// last one, so adding an existing rule again never fails: it
		// makes a second copy, which the stop would leave behind.
		if !l.ruleExists(r) {
			if err := l.h.RuleAdd(r); err != nil {
				undo()
				return fmt.Errorf("%s: full tunnel %s: adding policy rule (%s): %v", l.name, name, describeRule(r), err)
			}
		}
		ft.rules = append(ft.rules, r)
	}
	l.full[family] = ft
	return nil
}

// familyWanted is one family and whether a full tunnel is asked for it.
type familyWanted struct {
	family int
	want   bool
}

func families(v4, v6 bool) [2]familyWanted {
	return [2]familyWanted{{netlink.FAMILY_V4, v4}, {netlink.FAMILY_V6, v6}}
}

// fullTunnelRoute is the default route of family through the device in
// table.
func (l *Link) fullTunnelRoute(family, table int) *netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if family == netlink.FAMILY_V6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{LinkIndex: l.link.Attrs().Index, Dst: dst, Table: table, Scope: netlink.SCOPE_LINK}
}

// fullTunnelRules are the two policy rules of family's full tunnel: packets
// without mark look up table; the main table's routes more specific than a
// default keep winning.
func fullTunnelRules(family, table int, mark uint32) []*netlink.Rule {
	notMarked := netlink.NewRule()
	notMarked.Family, notMarked.Table, notMarked.Mark, notMarked.Invert = family, table, mark, true
	suppress := netlink.NewRule()
	suppress.Family, suppress.Table, suppress.SuppressPrefixlen = family, unix.RT_TABLE_MAIN, 0
	return []*netlink.Rule{notMarked, suppress}
}

// ruleExists reports whether a rule selecting as want does (whatever its
// priority): one of ours left by a previous run.
func (l *Link) ruleExists(want *netlink.Rule) bool {
	rules, err := l.h.RuleList(want.Family)
	if err != nil {
		return false
	}
	for _, r := range rules {
		if r.Table == want.Table && r.Mark == want.Mark && r.Invert == want.Invert &&
			r.SuppressPrefixlen == want.SuppressPrefixlen && r.Src == nil && r.Dst == nil &&
			r.IifName == "" && r.OifName == "" {
			return true
		}
	}
	return false
}

// otherFullTunnel reports whether family has a full tunnel's rule (packets
// without a mark look up a table) other than this Link's: its rules are
// deleted before the suppress rule is looked at.
func (l *Link) otherFullTunnel(family int) bool {
	rules, err := l.h.RuleList(family)
	if err != nil {
		return true // keep the suppress rule: harmless on its own
	}
	for _, r := range rules {
		if r.Invert && r.Mark != 0 {
			return true
		}
	}
	return false
}

// tableRoutesHere reports whether table's default route of family goes
// through this device.
func (l *Link) tableRoutesHere(family, table int) bool {
	return slices.Contains(l.defaultRouteTables(family), table)
}

// PruneFullTunnel takes out what a previous run left of a full tunnel that
// this run does not want: the device systemd kept still carries its
// default route, and the policy rules are still there. Not wanted are a
// family this run has no /0 for (v4, v6 false), and any other table's
// default route through the device (listen_port, hence table and mark,
// changed across the restart: the old rule would send the newly marked
// UDP packets into the tunnel itself). Items not there are no error. Only
// for a device inherited from a previous run, before SetFullTunnel: it
// does not touch what this Link installed.
func (l *Link) PruneFullTunnel(table int, mark uint32, v4, v6 bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var firstErr error
	for _, fam := range families(v4, v6) {
		if l.full[fam.family] != nil {
			continue
		}
		for _, t := range l.defaultRouteTables(fam.family) {
			if fam.want && t == table {
				continue // addFullTunnel takes it over
			}
			m := uint32(t) // as the daemon picks them: the mark is the table
			if t == table {
				m = mark
			}
			leftover := &fullTunnel{route: l.fullTunnelRoute(fam.family, t), rules: fullTunnelRules(fam.family, t, m)}
			if err := l.removeRulesAndRoute(fam.family, leftover); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// defaultRouteTables lists the tables, other than the kernel's own, that
// route family's default through this device: full tunnels' tables. (Rules
// of a table that routes through another device may be another tunnel's,
// sharing the table number, and are not ours to touch.)
func (l *Link) defaultRouteTables(family int) []int {
	filter := &netlink.Route{LinkIndex: l.link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC}
	routes, err := l.h.RouteListFiltered(family, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil
	}
	var out []int
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		switch r.Table {
		case unix.RT_TABLE_MAIN, unix.RT_TABLE_LOCAL, unix.RT_TABLE_DEFAULT:
			continue
		}
		out = append(out, r.Table)
	}
	return out
}

func (l *Link) removeFullTunnel(family int) error {
	ft := l.full[family]
	if ft == nil {
		return nil
	}
	err := l.removeRulesAndRoute(family, ft)
	delete(l.full, family)
	return err
}

// removeRulesAndRoute deletes ft's rules and route; l.mu is held.
func (l *Link) removeRulesAndRoute(family int, ft *fullTunnel) error {
	var firstErr error
	for _, r := range ft.rules {
		if r.SuppressPrefixlen >= 0 && l.otherFullTunnel(family) {
			// wg-quick adds the same rule, and an existing one is
			// taken over rather than added twice: it stays while
			// another full tunnel's rule needs it.
			continue
		}
		if err := l.h.RuleDel(r); err != nil && !gone(err) && firstErr == nil {
			firstErr = fmt.Errorf("%s: removing policy rule (%s): %v", l.name, describeRule(r), err)
		}
	}
	if err := l.h.RouteDel(ft.route); err != nil && !gone(err) && firstErr == nil {
		firstErr = fmt.Errorf("%s: removing the default route of table %d: %v", l.name, ft.route.Table, err)
	}
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
