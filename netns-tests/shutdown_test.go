package netnstests

import (
	"strings"
	"testing"
)

// Scenario 10: SIGTERM removes the device and every route the daemon added,
// and the process exits 0.
func TestShutdown(t *testing.T) {
	l := newLab(t)
	const site4, site6 = "198.19.40.0/24", "fd00:19:40::/64"
	a, _ := l.twoHosts(func(a, b *node) {
		// Subnets behind b, so a adds routes beyond its own address's.
		a.Peers[0].AllowedIPs = append(a.Peers[0].AllowedIPs, site4, site6)
	})
	routes := func() string {
		return l.run(a.ns, "ip", "-4", "route", "show") + l.run(a.ns, "ip", "-6", "route", "show")
	}
	before := routes()
	for _, want := range []string{site4, site6, "dev " + devName} {
		if !strings.Contains(before, want) {
			t.Fatalf("while running, a's routes lack %q:\n%s", want, before)
		}
	}
	if code := a.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0; log:\n%s", code, a.log())
	}
	if a.hasDevice() {
		t.Errorf("device %s still exists after SIGTERM", devName)
	}
	after := routes()
	for _, gone := range []string{site4, site6, "dev " + devName, addrOf(overA)} {
		if strings.Contains(after, gone) {
			t.Errorf("after SIGTERM a's routes still mention %q:\n%s", gone, after)
		}
	}
	if _, err := a.tryShow(); err == nil {
		t.Error("show still answers after the tunnel stopped")
	}
}
