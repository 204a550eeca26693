// Package netcfg applies stunnel's kernel-side configuration to its TUN
// device: MTU, overlay addresses, link up, and one route through the device
// per allowed prefix of the peers. It records what it added so it can undo
// exactly that, and nothing that was there before.
//
// It talks netlink in the calling thread's network namespace: the daemon runs
// in the namespace it configures (`ip netns exec`), so that is the right one.
package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link is the kernel-side configuration stunnel applied to its TUN device;
// Remove undoes exactly what Apply and SetRoutes added.
type Link struct {
	h      *netlink.Handle // the namespace to talk to; a zero Handle means the caller's
	name   string
	link   netlink.Link
	skip   []netip.Prefix // connected prefixes of our addresses: the kernel routes them
	mu     sync.Mutex     // guards addrs and routes; reload and shutdown may overlap
	addrs  []netip.Prefix // addresses we added (not ones that were already there)
	routes []netip.Prefix // routes we added, sorted

	// full is the full-tunnel table route and rules we added, by netlink
	// family (fulltunnel.go); guarded by mu.
	full map[int]*fullTunnel
}

// Apply sets the MTU (0 leaves it as it is), adds the addresses, brings the
// link up, and adds a route via the device for each prefix in routes, skipping
// a route whose prefix equals the connected prefix of one of addrs (the kernel
// made that one when the address was added). If any step fails, what Apply had
// added so far is removed again and the error names the device and the item.
func Apply(ifname string, mtu int, addrs []netip.Prefix, routes []netip.Prefix) (*Link, error) {
	return apply(&netlink.Handle{}, ifname, mtu, addrs, routes)
}

func apply(h *netlink.Handle, ifname string, mtu int, addrs, routes []netip.Prefix) (*Link, error) {
	link, err := h.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%s: no such network device", ifname)
		}
		return nil, fmt.Errorf("%s: looking up the device: %v", ifname, err)
	}
	l := &Link{h: h, name: ifname, link: link}
	if mtu > 0 {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("%s: setting MTU %d: %v", ifname, mtu, err)
		}
	}
	// No IPv6 link-local address: without one the kernel sends no router
	// solicitations into the tunnel, which no peer routes and which would
	// only show up as no_route drops (the MLD reports a forwarding host
	// still sends are dropped uncounted by the data plane: tunnel/chatter.go).
	// Best effort: a host without IPv6 refuses it and needs it even less.
	_ = h.LinkSetIP6AddrGenMode(link, in6AddrGenModeNone)
	for _, a := range addrs {
		if !a.IsValid() {
			l.Remove()
			return nil, fmt.Errorf("%s: adding address: invalid prefix %q", ifname, a)
		}
		na := &netlink.Addr{IPNet: ipNet(a)}
		if a.Addr().Is6() {
			// A tunnel has no link-layer neighbours to collide with;
			// skipping DAD makes the address usable at once.
			na.Flags = unix.IFA_F_NODAD
		}
		switch err := h.AddrAdd(link, na); {
		case errors.Is(err, syscall.EEXIST):
			// Already there: not ours to remove later.
		case err != nil:
			l.Remove()
			return nil, fmt.Errorf("%s: adding address %s: %v", ifname, a, err)
		default:
			l.addrs = append(l.addrs, a)
		}
		l.skip = append(l.skip, a.Masked())
	}
	if err := h.LinkSetUp(link); err != nil {
		l.Remove()
		return nil, fmt.Errorf("%s: setting link up: %v", ifname, err)
	}
	if err := l.SetRoutes(routes); err != nil {
		l.Remove()
		return nil, err
	}
	return l, nil
}

// SetRoutes makes the device's stunnel routes equal to routes (on reload):
// it adds the new ones, then removes the ones gone. If adding one fails, the
// routes added by this call are removed again and the old set stays; a route
// somebody else already deleted counts as removed.
func (l *Link) SetRoutes(routes []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := l.wanted(routes)
	var added []netip.Prefix
	for _, p := range want {
		if !p.IsValid() {
			l.rollback(added)
			return fmt.Errorf("%s: adding route: invalid prefix %q", l.name, p)
		}
		if _, ok := slices.BinarySearchFunc(l.routes, p, comparePrefix); ok {
			continue
		}
		if err := l.h.RouteAdd(l.route(p)); err != nil {
			if errors.Is(err, syscall.EEXIST) && l.routedHere(p) {
				continue // kept from the previous run on an inherited device (adopt.go)
			}
			l.rollback(added)
			return &RouteError{Link: l.name, Prefix: p, Err: err}
		}
		added = append(added, p)
	}
	var firstErr error
	kept := want
	for _, p := range l.routes {
		if _, ok := slices.BinarySearchFunc(want, p, comparePrefix); ok {
			continue
		}
		if err := l.delRoute(p); err != nil {
			kept = append(kept, p) // still installed: remember it for Remove
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: removing route %s: %v", l.name, p, err)
			}
		}
	}
	slices.SortFunc(kept, comparePrefix)
	l.routes = kept
	return firstErr
}

// wanted returns routes masked, deduplicated, sorted, without the connected
// prefixes of our addresses.
func (l *Link) wanted(routes []netip.Prefix) []netip.Prefix {
	want := make([]netip.Prefix, 0, len(routes))
	for _, p := range routes {
		p = p.Masked()
		if !slices.Contains(l.skip, p) {
			want = append(want, p)
		}
	}
	slices.SortFunc(want, comparePrefix)
	return slices.Compact(want)
}

func (l *Link) rollback(added []netip.Prefix) {
	for _, p := range added {
		_ = l.delRoute(p) // best effort: the error being returned says what went wrong
	}
}

// Routes returns the routes stunnel added, sorted.
func (l *Link) Routes() []netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.routes)
}

// Remove deletes the routes and addresses Apply and SetRoutes added. It leaves
// the MTU and link state alone: the TUN device itself disappears when its file
// descriptor closes. Items already gone (or a device already gone) are not
// errors; calling Remove twice is harmless. The error names the first item
// that could not be removed; Remove still tries all the others.
func (l *Link) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var firstErr error
	note := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, p := range l.routes {
		if err := l.delRoute(p); err != nil {
			note(fmt.Errorf("%s: removing route %s: %v", l.name, p, err))
		}
	}
	l.routes = nil
	if err := l.removeAllFullTunnels(); err != nil {
		note(err)
	}
	for _, a := range l.addrs {
		err := l.h.AddrDel(l.link, &netlink.Addr{IPNet: ipNet(a)})
		if err != nil && !gone(err) {
			note(fmt.Errorf("%s: removing address %s: %v", l.name, a, err))
		}
	}
	l.addrs = nil
	return firstErr
}

func (l *Link) route(p netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: l.link.Attrs().Index,
		Dst:       ipNet(p),
		Scope:     netlink.SCOPE_LINK,
	}
}

// delRoute deletes one of our routes; one that is already gone is no error.
func (l *Link) delRoute(p netip.Prefix) error {
	if err := l.h.RouteDel(l.route(p)); err != nil && !gone(err) {
		return err
	}
	return nil
}

// gone reports whether a delete failed because the thing (or the whole
// device) no longer exists.
func gone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENODEV) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENOENT)
}

func ipNet(p netip.Prefix) *net.IPNet {
	// A 4-in-6 mapped prefix stays IPv6, as the kernel would take it.
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE of <linux/if_link.h>
// (`ip link set DEV addrgenmode none`), which x/sys/unix does not name.
const in6AddrGenModeNone = 1

// RouteError is SetRoutes' failure to add one route; the caller can tell
// which prefix the kernel refused (a directory record's is left out, a
// file peer's fails the reload).
type RouteError struct {
	Link   string
	Prefix netip.Prefix
	Err    error
}

func (e *RouteError) Error() string {
	hint := ""
	if errors.Is(e.Err, syscall.EEXIST) {
		hint = " (another interface routes it?)"
	}
	return fmt.Sprintf("%s: adding route %s: %v%s", e.Link, e.Prefix, e.Err, hint)
}

func (e *RouteError) Unwrap() error { return e.Err }
