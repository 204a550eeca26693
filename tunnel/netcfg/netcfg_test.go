package netcfg

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"stunnel/internal/netns"
	"stunnel/internal/roottest"
)

var nsSeq atomic.Int32

// testNS makes a fresh network namespace holding TUN devices named ifnames
// and returns a netlink handle into it. Everything is removed when the test
// ends, also on failure.
func testNS(t *testing.T, ifnames ...string) *netlink.Handle {
	h, _ := testNSNamed(t, ifnames...)
	return h
}

// testNSNamed is testNS that also returns the namespace's name.
func testNSNamed(t *testing.T, ifnames ...string) (*netlink.Handle, string) {
	t.Helper()
	roottest.Require(t, "network namespaces")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2 `ip` not found: %v", err)
	}
	name := fmt.Sprintf("stnc-%d-%d", os.Getpid(), nsSeq.Add(1))
	if err := netns.Add(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	nsh, err := vnetns.GetFromName(name)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", name, err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	// A persistent TUN device stands in for stunnel's (this kernel may lack
	// the dummy driver). With no process attached it has no carrier, so its
	// routes show "linkdown"; they are installed all the same.
	for _, ifn := range ifnames {
		if out, err := exec.Command("ip", "-n", name, "tuntap", "add", "mode", "tun", "name", ifn).CombinedOutput(); err != nil {
			t.Fatalf("adding TUN %s in %s: %v: %s", ifn, name, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "-n", name, "tuntap", "del", "mode", "tun", "name", ifn).CombinedOutput(); err != nil {
				t.Errorf("cleanup: deleting TUN %s: %v: %s", ifn, err, out)
			}
		})
	}
	return h, name
}

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// kernelAddrs lists the global addresses on ifname (not the fe80:: one the
// kernel adds by itself).
func kernelAddrs(t *testing.T, h *netlink.Handle, ifname string) []netip.Prefix {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if p := netip.PrefixFrom(ip.Unmap(), ones); !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// kernelRoutes lists the main-table routes through ifname, without link-local
// and multicast ones.
func kernelRoutes(t *testing.T, h *netlink.Handle, ifname string) []netip.Prefix {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if !p.Addr().IsLinkLocalUnicast() && !p.Addr().IsMulticast() {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func TestApplySetRoutesRemove(t *testing.T) {
	h := testNS(t, "sttest0")
	addrs := pfxs("198.19.1.1/24", "fd00:19::1/64")
	routes := pfxs("198.19.2.0/24", "198.19.1.0/24", "198.19.3.7/32", "fd00:20::/64", "fd00:19::/64",
		"198.19.2.9/24") // unmasked duplicate of the first
	l, err := apply(h, "sttest0", 1380, addrs, routes)
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("sttest0")
	if err != nil {
		t.Fatal(err)
	}
	if got := link.Attrs().MTU; got != 1380 {
		t.Errorf("MTU = %d, want 1380", got)
	}
	if link.Attrs().RawFlags&1 == 0 { // IFF_UP
		t.Error("link is not up")
	}
	if got, want := kernelAddrs(t, h, "sttest0"), pfxs("198.19.1.1/24", "fd00:19::1/64"); !slices.Equal(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}
	// Ours (connected ones skipped, duplicates folded) ...
	if got, want := l.Routes(), pfxs("198.19.2.0/24", "198.19.3.7/32", "fd00:20::/64"); !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}
	// ... and the kernel's view: ours plus the connected routes.
	want := pfxs("198.19.1.0/24", "198.19.2.0/24", "198.19.3.7/32", "fd00:19::/64", "fd00:20::/64")
	if got := kernelRoutes(t, h, "sttest0"); !slices.Equal(got, want) {
		t.Errorf("kernel routes = %v, want %v", got, want)
	}

	// Reload: one kept, one gone, one new; a connected prefix stays skipped.
	if err := l.SetRoutes(pfxs("198.19.4.0/24", "198.19.2.0/24", "fd00:20::/64", "198.19.1.0/24")); err != nil {
		t.Fatal(err)
	}
	if got, want := l.Routes(), pfxs("198.19.2.0/24", "198.19.4.0/24", "fd00:20::/64"); !slices.Equal(got, want) {
		t.Errorf("after SetRoutes, Routes() = %v, want %v", got, want)
	}
	want = pfxs("198.19.1.0/24", "198.19.2.0/24", "198.19.4.0/24", "fd00:19::/64", "fd00:20::/64")
	if got := kernelRoutes(t, h, "sttest0"); !slices.Equal(got, want) {
		t.Errorf("after SetRoutes, kernel routes = %v, want %v", got, want)
	}

	// A route someone else deleted meanwhile is not an error for Remove.
	if err := h.RouteDel(l.route(netip.MustParsePrefix("198.19.4.0/24"))); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := kernelAddrs(t, h, "sttest0"); len(got) != 0 {
		t.Errorf("addresses left after Remove: %v", got)
	}
	if got := kernelRoutes(t, h, "sttest0"); len(got) != 0 {
		t.Errorf("routes left after Remove: %v", got)
	}
	if err := l.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRouteConflictRollsBack(t *testing.T) {
	h := testNS(t, "sttest0", "other0")
	other, err := h.LinkByName("other0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(other); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: other.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("198.19.9.0/24")),
		Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	_, err = apply(h, "sttest0", 0, pfxs("198.19.1.1/24"), pfxs("198.19.5.0/24", "198.19.9.0/24"))
	if err == nil {
		t.Fatal("Apply succeeded although other0 routes 198.19.9.0/24")
	}
	const want = "sttest0: adding route 198.19.9.0/24: file exists (another interface routes it?)"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if got := kernelAddrs(t, h, "sttest0"); len(got) != 0 {
		t.Errorf("failed Apply left addresses: %v", got)
	}
	if got := kernelRoutes(t, h, "sttest0"); len(got) != 0 {
		t.Errorf("failed Apply left routes: %v", got)
	}
	if got := kernelRoutes(t, h, "other0"); !slices.Equal(got, pfxs("198.19.9.0/24")) {
		t.Errorf("the other interface's route was touched: %v", got)
	}

	// A failing reload keeps the old set and drops what it had added.
	l, err := apply(h, "sttest0", 0, nil, pfxs("198.19.5.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove() })
	if err := l.SetRoutes(pfxs("198.19.6.0/24", "198.19.9.0/24")); err == nil {
		t.Fatal("SetRoutes succeeded with a conflicting route")
	}
	if got, want := l.Routes(), pfxs("198.19.5.0/24"); !slices.Equal(got, want) {
		t.Errorf("after failed SetRoutes, Routes() = %v, want %v", got, want)
	}
	if got, want := kernelRoutes(t, h, "sttest0"), pfxs("198.19.5.0/24"); !slices.Equal(got, want) {
		t.Errorf("after failed SetRoutes, kernel routes = %v, want %v", got, want)
	}
}

func TestPreexistingAddressIsKept(t *testing.T) {
	h := testNS(t, "sttest0")
	link, err := h.LinkByName("sttest0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("198.19.1.1/24"))}); err != nil {
		t.Fatal(err)
	}
	l, err := apply(h, "sttest0", 0, pfxs("198.19.1.1/24", "198.19.7.1/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if got, want := kernelAddrs(t, h, "sttest0"), pfxs("198.19.1.1/24"); !slices.Equal(got, want) {
		t.Errorf("after Remove, addresses = %v, want only the one that was there before: %v", got, want)
	}
}

func TestNoSuchDevice(t *testing.T) {
	h := testNS(t)
	_, err := apply(h, "nosuch0", 1420, nil, nil)
	if err == nil || err.Error() != "nosuch0: no such network device" {
		t.Errorf("error = %v, want %q", err, "nosuch0: no such network device")
	}
}

// TestApplyDefaultHandle runs the exported Apply, which uses the namespace
// of the calling thread, as the daemon does under `ip netns exec`.
func TestApplyDefaultHandle(t *testing.T) {
	h, nsName := testNSNamed(t, "sttest0")
	var l *Link
	err := netns.Do(nsName, func() error {
		var err error
		l, err = Apply("sttest0", 1400, pfxs("198.19.1.1/24"), pfxs("198.19.8.0/24"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kernelRoutes(t, h, "sttest0"), pfxs("198.19.1.0/24", "198.19.8.0/24"); !slices.Equal(got, want) {
		t.Errorf("kernel routes = %v, want %v", got, want)
	}
	if err := netns.Do(nsName, l.Remove); err != nil {
		t.Fatal(err)
	}
	if got := kernelRoutes(t, h, "sttest0"); len(got) != 0 {
		t.Errorf("routes left after Remove: %v", got)
	}
}
