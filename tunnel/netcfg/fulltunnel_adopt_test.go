package netcfg

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// fullTunnelRulesIn counts family's rules that send unmarked packets to
// table, and its suppress_prefixlength 0 rules.
func fullTunnelRulesIn(t *testing.T, h *netlink.Handle, family, table int) (notMarked, suppress int) {
	t.Helper()
	rules, err := h.RuleList(family)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		switch {
		case r.Invert && r.Table == table:
			notMarked++
		case r.SuppressPrefixlen == 0:
			suppress++
		}
	}
	return notMarked, suppress
}

// fullTunnelLink applies device dev of h with no addresses or routes and a
// full tunnel of the families asked for in table (also the mark).
func fullTunnelLink(t *testing.T, h *netlink.Handle, dev string, table int, v4, v6 bool) *Link {
	t.Helper()
	l, err := apply(h, dev, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetFullTunnel(table, uint32(table), v4, v6); err != nil {
		t.Fatal(err)
	}
	return l
}

// A device systemd kept across a restart keeps its full tunnel: the next
// run takes over the route and rules (no second copy of a rule), a run
// whose config dropped a family removes that family's leftovers, and a
// default route of another device in the table is still a clash. (A full
// stop, device gone and rules left: TestFDStoreFullTunnelRestarts.)
func TestFullTunnelTakenOverAfterRestart(t *testing.T) {
	const table, mark = 51999, 51999
	h := testNS(t, "sttest0")
	fullTunnelLink(t, h, "sttest0", table, true, true)
	// The old process exits without Remove: systemd keeps the device.

	again, err := apply(h, "sttest0", 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.PruneFullTunnel(table, mark, true, false); err != nil {
		t.Fatalf("PruneFullTunnel: %v", err)
	}
	if n, s := fullTunnelRulesIn(t, h, netlink.FAMILY_V6, table); n != 0 || s != 0 {
		t.Errorf("IPv6, dropped from the config: %d rules to table %d and %d suppress rules left, want none", n, table, s)
	}
	if again.tableRoutesHere(netlink.FAMILY_V6, table) {
		t.Errorf("IPv6, dropped from the config: table %d still routes through the device", table)
	}
	if err := again.SetFullTunnel(table, mark, true, false); err != nil {
		t.Fatalf("SetFullTunnel over the kept IPv4 full tunnel: %v", err)
	}
	if n, s := fullTunnelRulesIn(t, h, netlink.FAMILY_V4, table); n != 1 || s != 1 {
		t.Errorf("IPv4 taken over: %d rules to table %d and %d suppress rules, want one each", n, table, s)
	}

	// Another device's default route in the table is still a clash.
	h2 := testNS(t, "sttest0", "other0")
	other := fullTunnelLink(t, h2, "other0", table, true, false)
	mine, err := apply(h2, "sttest0", 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.SetFullTunnel(table, mark, true, false); err == nil {
		t.Errorf("SetFullTunnel with table %d routing through another device: no error", table)
	}
	if err := other.Remove(); err != nil {
		t.Fatal(err)
	}
}

// The suppress rule is the same for every full tunnel (wg-quick adds it
// too): one already there is used, not copied, and it stays at Remove while
// another full tunnel's rule is left.
func TestSuppressRuleSharedWithAnotherFullTunnel(t *testing.T) {
	const ours, theirs = 51998, 51997
	h := testNS(t, "sttest0", "other0")
	other := fullTunnelLink(t, h, "other0", theirs, true, false)
	l := fullTunnelLink(t, h, "sttest0", ours, true, false)
	if _, s := fullTunnelRulesIn(t, h, netlink.FAMILY_V4, ours); s != 1 {
		t.Errorf("%d suppress rules with two full tunnels, want one", s)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if n, s := fullTunnelRulesIn(t, h, netlink.FAMILY_V4, theirs); n != 1 || s != 1 {
		t.Errorf("after our Remove the other full tunnel has %d rules and %d suppress rules, want one each", n, s)
	}
	if err := other.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, s := fullTunnelRulesIn(t, h, netlink.FAMILY_V4, theirs); s != 0 {
		t.Errorf("%d suppress rules after both full tunnels went, want none", s)
	}
}

// A kept device whose next run has another table (listen_port changed
// across the restart): the old table's route and rules go, or the old
// rule would route the newly marked UDP packets into the tunnel itself.
func TestFullTunnelOfAnotherTablePruned(t *testing.T) {
	const oldTable, newTable = 51996, 51995
	h := testNS(t, "sttest0")
	fullTunnelLink(t, h, "sttest0", oldTable, true, true)
	again, err := apply(h, "sttest0", 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.PruneFullTunnel(newTable, newTable, true, true); err != nil {
		t.Fatalf("PruneFullTunnel: %v", err)
	}
	if err := again.SetFullTunnel(newTable, newTable, true, true); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if n, _ := fullTunnelRulesIn(t, h, fam, oldTable); n != 0 || again.tableRoutesHere(fam, oldTable) {
			t.Errorf("family %d: old table %d left with %d rules, route %v", fam, oldTable, n, again.tableRoutesHere(fam, oldTable))
		}
		if n, s := fullTunnelRulesIn(t, h, fam, newTable); n != 1 || s != 1 || !again.tableRoutesHere(fam, newTable) {
			t.Errorf("family %d: new table %d has %d rules and %d suppress rules (want one each), route %v", fam, newTable, n, s, again.tableRoutesHere(fam, newTable))
		}
	}
	if err := again.Remove(); err != nil {
		t.Fatal(err)
	}
}
