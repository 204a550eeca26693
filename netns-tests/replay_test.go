package netnstests

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Scenario 5: replay attack. The underlay packets of a transfer from a to b
// are recorded on b's side, then sent again, first from a's own address and
// then from an attacker's: no replayed packet reaches b's TUN (a UDP counter
// behind the tunnel sees every sequence number exactly once), b counts the
// replays, and b's endpoint for a never moves to the attacker.
func TestReplayAttack(t *testing.T) {
	l := newLab(t)
	nsA, nsB, nsX := l.ns("a"), l.ns("b"), l.ns("x")
	l.hub(map[string]string{nsA: "198.18.5.1/24", nsB: "198.18.5.2/24", nsX: "198.18.5.66/24"})
	for _, ns := range []string{nsA, nsB, nsX} {
		l.noOffloads(ns, "u0")
	}
	a := l.newNode(nsA, "host-a", "198.18.5.1", overA+"/24")
	b := l.newNode(nsB, "host-b", "198.18.5.2", overB+"/24")
	a.addPeer(b, true, overB+"/32")
	b.addPeer(a, true, overA+"/32")
	a.start()
	b.start()
	pingUntil(t, a.ns, overB, sessionWait)

	counter := listenCounter(t, b.ns, overB)
	sender := newUDPSender(t, a.ns, counter.addr())
	capt := startCapture(t, b.ns, "u0", netip.MustParseAddr(a.Underlay), netip.MustParseAddrPort(b.endpoint()))
	const n = 1000
	sender.sendSeq(t, counter, n, 200)
	pkts := capt.packets()
	t.Logf("captured %d underlay packets for %d datagrams", len(pkts), n)
	if len(pkts) < n {
		t.Fatalf("captured %d underlay packets from %s, want at least %d", len(pkts), a.Underlay, n)
	}
	assertOnce := func(when string) {
		t.Helper()
		d, dups, other := counter.counts()
		if d != n || dups != 0 || other != 0 {
			t.Fatalf("%s: the counter saw %d distinct sequence numbers (want %d), %d more than once, %d strangers",
				when, d, n, dups, other)
		}
	}
	assertOnce("before replay")

	replay := func(who, ns string, batch [][]byte) {
		t.Helper()
		before := b.drops(a.ID, dropReplayed)
		// In bursts, waiting for b to count each, so no socket buffer
		// overflows and every replay is judged by the daemon. A few captured
		// packets may be keepalives or handshakes, hence the small slack.
		const burst, slack = 50, 8
		for i := 0; i < len(batch); i += burst {
			end := min(i+burst, len(batch))
			sendRawIPv4(t, ns, batch[i:end])
			want := before + uint64(max(end-slack, 0))
			waitFor(t, 10*time.Second, fmt.Sprintf("%s: b to count %d replays", who, want-before), func() bool {
				return b.drops(a.ID, dropReplayed) >= want
			})
		}
		assertOnce("after replay " + who)
		if p := b.peer(a.ID); p.Endpoint != a.endpoint() {
			t.Fatalf("after replay %s, b's endpoint for a is %q, want %q", who, p.Endpoint, a.endpoint())
		}
	}
	replay("from a's address", a.ns, pkts)

	attacker := netip.MustParseAddr("198.18.5.66")
	forged := make([][]byte, len(pkts))
	for i, p := range pkts {
		forged[i] = resource(p, attacker)
	}
	replay("from the attacker's address", nsX, forged)

	// The tunnel still carries fresh traffic, each datagram once.
	sender.sendSeq(t, counter, 100, 200)
	if d, dups, _ := counter.counts(); d != n+100 || dups != 0 {
		t.Fatalf("after the replays, fresh traffic: %d distinct (want %d), %d duplicated", d, n+100, dups)
	}
}
