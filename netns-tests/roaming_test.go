package netnstests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Scenario 7: roaming. The initiator's underlay address changes in the
// middle of a transfer; the transfer completes intact and the responder,
// which never had an endpoint for it, shows the new one.
func TestRoaming(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(func(a, b *node) {
		b.Peers[0].Endpoint = "" // b learns a's endpoint from a's packets
	})
	// Keep the other addresses of the subnet when the first one goes.
	l.sysctl(a.ns, "net.ipv4.conf.all.promote_secondaries", "1")
	l.sysctl(a.ns, "net.ipv4.conf.u0.promote_secondaries", "1")
	pingUntil(t, a.ns, overB, sessionWait)
	if p := b.peer(a.ID); p.Endpoint != a.endpoint() {
		t.Fatalf("b's endpoint for a is %q, want %q", p.Endpoint, a.endpoint())
	}

	// The sender pauses after 4 of 16 MiB; the address changes while the
	// connection is open with data in flight behind it.
	stream := startPausedStream(t, a.ns, b.ns, overB, 16<<20, 4<<20)

	const moved = "198.18.1.11"
	l.addAddr(a.ns, "u0", moved+"/24")
	l.run(a.ns, "ip", "addr", "del", underA, "dev", "u0")
	if out := l.run(a.ns, "ip", "-4", "addr", "show", "dev", "u0"); strings.Contains(out, addrOf(underA)+"/") || !strings.Contains(out, moved+"/") {
		t.Fatalf("a's underlay addresses after the move:\n%s", out)
	}
	res, err := stream.finish()
	if err != nil {
		t.Fatalf("transfer across the address change: %v", err)
	}
	t.Logf("%d bytes arrived intact across the move", res.Received)

	want := fmt.Sprintf("%s:%d", moved, listenPort)
	waitFor(t, 10*time.Second, "b to show a's new endpoint "+want, func() bool {
		s, err := b.tryShow()
		p, ok := findPeer(s, a.ID)
		return err == nil && ok && p.Endpoint == want
	})
}
