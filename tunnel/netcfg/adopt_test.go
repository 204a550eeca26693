package netcfg

import (
	"slices"
	"testing"
)

// A device kept across a restart still has the previous run's addresses and
// routes: applying the same config again succeeds, takes the routes as its
// own (a reload can drop them), and a conflict through another interface
// is still refused.
func TestApplyOnDeviceKeptAcrossRestart(t *testing.T) {
	h := testNS(t, "sttest0", "other0")
	routes := pfxs("198.19.5.0/24", "fd00:5::/64")
	first, err := apply(h, "sttest0", 0, pfxs("198.19.1.1/24"), routes)
	if err != nil {
		t.Fatal(err)
	}
	_ = first // the old process exits without Remove: systemd keeps the device

	again, err := apply(h, "sttest0", 0, pfxs("198.19.1.1/24"), routes)
	if err != nil {
		t.Fatalf("Apply on the kept device: %v", err)
	}
	if got := again.Routes(); !slices.Equal(got, routes) {
		t.Fatalf("Routes() = %v, want %v taken over", got, routes)
	}
	if err := again.SetRoutes(pfxs("198.19.5.0/24")); err != nil {
		t.Fatal(err)
	}
	// 198.19.1.0/24 is the address's connected route.
	if got, want := kernelRoutes(t, h, "sttest0"), pfxs("198.19.1.0/24", "198.19.5.0/24"); !slices.Equal(got, want) {
		t.Fatalf("after a reload dropping fd00:5::/64, kernel routes = %v, want %v", got, want)
	}
	if err := again.Remove(); err != nil {
		t.Fatal(err)
	}
	// The address was already there, so it is not this Link's to remove.
	if got, want := kernelRoutes(t, h, "sttest0"), pfxs("198.19.1.0/24"); !slices.Equal(got, want) {
		t.Fatalf("after Remove, kernel routes = %v, want %v", got, want)
	}
}

// A kept device whose config changed between the two runs: the old address
// and the routes of removed peers go (IPv6 ones too: the kernel reports
// every IPv6 route with universe scope, whatever scope it was added with),
// the new ones and the kept peers' routes stay (IPv6 ones too: that scope
// is no longer what spares them), and another interface's routes and the
// kernel's own are not touched.
func TestPruneKeptDevice(t *testing.T) {
	h := testNS(t, "sttest0", "other0")
	if _, err := apply(h, "sttest0", 0, pfxs("198.19.1.1/24", "fd00:1::1/64"), pfxs("198.19.5.0/24", "198.19.6.0/24", "fd00:5::/64", "fd00:6::/64")); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(h, "other0", 0, nil, pfxs("198.19.9.0/24")); err != nil {
		t.Fatal(err)
	}
	// The next run: address moved to .2, peer with 198.19.6.0/24 and
	// fd00:6::/64 removed.
	addrs := pfxs("198.19.1.2/24", "fd00:1::1/64")
	l, err := apply(h, "sttest0", 0, addrs, pfxs("198.19.5.0/24", "fd00:5::/64"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Prune(addrs); err != nil {
		t.Fatal(err)
	}
	if got := kernelAddrs(t, h, "sttest0"); !slices.Equal(got, addrs) {
		t.Fatalf("addresses after Prune = %v, want %v", got, addrs)
	}
	if got, want := kernelRoutes(t, h, "sttest0"), pfxs("198.19.1.0/24", "198.19.5.0/24", "fd00:1::/64", "fd00:5::/64"); !slices.Equal(got, want) {
		t.Fatalf("routes after Prune = %v, want %v", got, want)
	}
	if got, want := kernelRoutes(t, h, "other0"), pfxs("198.19.9.0/24"); !slices.Equal(got, want) {
		t.Fatalf("Prune touched another interface: %v", got)
	}
}
