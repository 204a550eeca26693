package netnstests

import "testing"

// netemArgs impairs the underlay: 5% loss, 25% of packets reordered (sent
// at once while the rest wait out a jittered delay), 2% duplicated.
var netemArgs = []string{"netem", "delay", "3ms", "2ms", "loss", "5%", "reorder", "25%", "50%", "duplicate", "2%"}

// Scenario 4: over a lossy, reordering, duplicating underlay, TCP transfers
// still complete intact, and the duplicated tunnel packets are dropped as
// replays and counted.
func TestBadNetwork(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	// Impair both directions, on wire-sized packets (no offloads), so each
	// duplicate is one tunnel packet.
	for _, n := range []*node{a, b} {
		l.noOffloads(n.ns, "u0")
		l.run(n.ns, "tc", append([]string{"qdisc", "add", "dev", "u0", "root"}, netemArgs...)...)
	}

	pingUntil(t, a.ns, overB, sessionWait)
	const size = 4 << 20
	tcpStream(t, a.ns, b.ns, overB, streamOpts{Size: size})
	tcpStream(t, b.ns, a.ns, overA, streamOpts{Size: size})

	pa, pb := a.peer(b.ID), b.peer(a.ID)
	replayed := pa.Drops[dropReplayed] + pb.Drops[dropReplayed]
	t.Logf("replayed drops: %s %d, %s %d; rx packets %d / %d",
		a.ID, pa.Drops[dropReplayed], b.ID, pb.Drops[dropReplayed], pa.RxPackets, pb.RxPackets)
	// Some 6000 packets cross each way; 2% duplication gives about 120 each
	// way. A handful is enough to prove the counter works without being a
	// timing- or luck-sensitive figure.
	if replayed < 5 {
		t.Errorf("only %d duplicated packets were counted as replays (a %v, b %v)", replayed, pa.Drops, pb.Drops)
	}
	for k, n := range map[string]uint64{"auth_failed a": pa.Drops["auth_failed"], "auth_failed b": pb.Drops["auth_failed"]} {
		if n != 0 {
			t.Errorf("%s = %d: netem does not corrupt, nothing should fail authentication", k, n)
		}
	}
}
