package netnstests

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"stunnel/internal/netns"
)

// badNet is the impairment of scenario 4: 5% loss, 25% of packets reordered
// by a jittered delay, 2% duplicated.
var badNet = impairment{Loss: 0.05, Duplicate: 0.02, Reorder: 0.25, MaxDelay: 4e6 /* 4 ms */}

var netemArgs = []string{"netem", "delay", "2ms", "2ms", "loss", "5%", "reorder", "75%", "50%", "duplicate", "2%"}

// Scenario 4: over a lossy, reordering, duplicating underlay, TCP transfers
// still complete intact, and the duplicated tunnel packets are dropped as
// replays and counted. The underlay is impaired with tc netem where the
// kernel has it, and otherwise (CONFIG_NET_SCH_NETEM unset, as on the
// project's CI machines) by a userspace relay with the same model.
func TestBadNetwork(t *testing.T) {
	l := newLab(t)
	var a, b *node
	if netemAvailable(l) {
		t.Log("impairing the underlay with tc netem")
		a, b = l.twoHosts(func(a, b *node) {
			for _, n := range []*node{a, b} {
				l.noOffloads(n.ns, "u0")
				// "reorder 75%": 75% of packets go at once and overtake
				// the other 25%, which wait out the jittered delay.
				l.run(n.ns, "tc", append([]string{"qdisc", "add", "dev", "u0", "root"}, netemArgs...)...)
			}
		})
	} else {
		t.Log("this kernel has no sch_netem: impairing the underlay with a userspace relay")
		a, b = relayedPair(l)
	}

	pingUntil(t, a.ns, overB, sessionWait)
	const size = 4 << 20
	tcpStream(t, a.ns, b.ns, overB, streamOpts{Size: size})
	tcpStream(t, b.ns, a.ns, overA, streamOpts{Size: size})

	pa, pb := a.peer(b.ID), b.peer(a.ID)
	replayed := pa.Drops[dropReplayed] + pb.Drops[dropReplayed]
	t.Logf("replayed drops: %s %d, %s %d; rx packets %d / %d",
		a.ID, pa.Drops[dropReplayed], b.ID, pb.Drops[dropReplayed], pa.RxPackets, pb.RxPackets)
	// Some 3000+ packets cross each way; 2% duplication makes about 60 each
	// way. A handful proves the counting without a luck-sensitive figure.
	if replayed < 5 {
		t.Errorf("only %d duplicated packets were counted as replays (a %v, b %v)", replayed, pa.Drops, pb.Drops)
	}
	if n := pa.Drops["auth_failed"] + pb.Drops["auth_failed"]; n != 0 {
		t.Errorf("%d packets failed authentication; the impairment never corrupts", n)
	}
}

// netemAvailable tries a netem qdisc in a scratch namespace.
func netemAvailable(l *lab) bool {
	ns := l.ns("probe")
	_, err := netns.Run(ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
	if err != nil && !strings.Contains(err.Error(), "unknown") {
		l.t.Logf("tc netem probe: %v", err)
	}
	return err == nil
}

// relayedPair puts hosts a and b on two links to a "wan" namespace whose
// relay forwards, impaired, every tunnel packet between them.
func relayedPair(l *lab) (a, b *node) {
	l.t.Helper()
	nsA, nsW, nsB := l.ns("a"), l.ns("wan"), l.ns("b")
	l.veth(nsA, "u0", "198.18.4.2/24", nsW, "wa", "198.18.4.1/24")
	l.veth(nsB, "u0", "198.18.6.2/24", nsW, "wb", "198.18.6.1/24")
	a = l.newNode(nsA, "host-a", "198.18.4.2", overA+"/24", over6A+"/64")
	b = l.newNode(nsB, "host-b", "198.18.6.2", overB+"/24", over6B+"/64")
	a.addPeer(b, false, overB+"/32", over6B+"/128")
	b.addPeer(a, false, overA+"/32", over6A+"/128")
	toA, toB := fmt.Sprintf("198.18.4.1:%d", listenPort), fmt.Sprintf("198.18.6.1:%d", listenPort)
	a.Peers[0].Endpoint, b.Peers[0].Endpoint = toA, toB
	r := startRelay(l.t, nsW,
		[2]netip.AddrPort{netip.MustParseAddrPort(toA), netip.MustParseAddrPort(toB)},
		[2]netip.AddrPort{netip.MustParseAddrPort(a.endpoint()), netip.MustParseAddrPort(b.endpoint())},
		badNet)
	l.t.Cleanup(func() {
		f, d, u, r := r.stats()
		l.t.Logf("relay: %d packets, %d lost, %d duplicated, %d reordered", f, d, u, r)
	})
	a.start()
	b.start()
	return a, b
}
