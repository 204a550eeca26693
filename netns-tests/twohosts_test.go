package netnstests

import "testing"

// Scenario 1: two hosts ping each other over IPv4 and IPv6 overlay
// addresses, and 64 MiB cross the tunnel each way unchanged.
func TestTwoHosts(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)

	pingUntil(t, a.ns, overB, sessionWait)
	for _, c := range []struct {
		from *node
		to   string
	}{
		{a, overB}, {b, overA}, {a, over6B}, {b, over6A},
	} {
		ping(t, c.from.ns, c.to, 3)
	}
	a.waitSession(b.ID, sessionWait)
	b.waitSession(a.ID, sessionWait)

	const size = 64 << 20
	tcpStream(t, a.ns, b.ns, overB, streamOpts{Size: size})
	tcpStream(t, b.ns, a.ns, over6A, streamOpts{Size: size})

	pa, pb := a.peer(b.ID), b.peer(a.ID)
	if pa.SessionID != pb.SessionID {
		t.Errorf("session IDs differ: %s says %q, %s says %q", a.ID, pa.SessionID, b.ID, pb.SessionID)
	}
	if pa.TxBytes < size || pa.RxBytes < size || pb.TxBytes < size || pb.RxBytes < size {
		t.Errorf("byte counters below %d: a tx %d rx %d, b tx %d rx %d", size, pa.TxBytes, pa.RxBytes, pb.TxBytes, pb.RxBytes)
	}
	if pa.Handshakes < 1 || pa.LastHandshake == nil || pb.Handshakes < 1 || pb.LastHandshake == nil {
		t.Errorf("handshakes not shown: a %d %v, b %d %v", pa.Handshakes, pa.LastHandshake, pb.Handshakes, pb.LastHandshake)
	}
	if pb.Endpoint != a.endpoint() || pa.Endpoint != b.endpoint() {
		t.Errorf("endpoints: a sees %q want %q, b sees %q want %q", pa.Endpoint, b.endpoint(), pb.Endpoint, a.endpoint())
	}
}
