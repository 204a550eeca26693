package netnstests

import (
	"net/netip"
	"testing"
	"time"
)

// TestHarness checks the test machinery itself on a bare veth link, with no
// tunnel: transfers hash equal, the counter counts, and the capture, the
// replay and the forged packets really reach a receiver when nothing stops
// them. Without this, "no replay arrived" in TestReplayAttack could mean the
// replays were never sent.
func TestHarness(t *testing.T) {
	l := newLab(t)
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", "198.18.9.1/24", nsB, "u0", "198.18.9.2/24")
	l.noOffloads(nsA, "u0")
	l.noOffloads(nsB, "u0")

	ping(t, nsA, "198.18.9.2", 2)
	if err := tryPing(nsA, "198.18.9.99", 1, 1); err == nil {
		t.Fatal("ping to an absent address succeeded")
	}
	tcpStream(t, nsA, nsB, "198.18.9.2", streamOpts{Size: 8 << 20})

	counter := listenCounter(t, nsB, "198.18.9.2")
	src := netip.MustParseAddr("198.18.9.1")
	capt := startCapture(t, nsB, "u0", src, counter.addr())
	const n = 100
	newUDPSender(t, nsA, counter.addr()).sendSeq(t, counter, n, 200)
	pkts := capt.packets()
	if len(pkts) != n {
		t.Fatalf("captured %d packets, want %d", len(pkts), n)
	}

	// Replayed as captured: every sequence number arrives a second time.
	sendRawIPv4(t, nsA, pkts)
	waitFor(t, 5*time.Second, "all replays to arrive", func() bool {
		_, dups, _ := counter.counts()
		return dups == n
	})
	// Re-sourced (checksums recomputed) and sent with a source a does not
	// own: they arrive too.
	forged := make([][]byte, n)
	for i, p := range pkts {
		forged[i] = resource(p, netip.MustParseAddr("198.18.9.77"))
	}
	sendRawIPv4(t, nsA, forged)
	waitFor(t, 5*time.Second, "all re-sourced replays to arrive", func() bool {
		counter.mu.Lock()
		defer counter.mu.Unlock()
		for _, k := range counter.seen {
			if k != 3 {
				return false
			}
		}
		return true
	})
	sendRawIPv4(t, nsA, [][]byte{udp4Packet(netip.MustParseAddrPort("198.18.9.55:1234"), counter.addr(), []byte("built"))})
	waitFor(t, 5*time.Second, "a built packet to arrive", func() bool {
		_, _, other := counter.counts()
		return other == 1
	})
	if got := counter.others(); got[0] != "built" {
		t.Fatalf("built packet arrived as %q", got[0])
	}
}
