package netnstests

import (
	"testing"
	"time"
)

// Scenario 6: rekey under load. With rekey_after 2s and reject_after 4s, a
// TCP connection carries traffic continuously for 30 s: at least ten
// handshakes happen, most of them resumptions with session tickets (issue
// 15), the connection survives intact, and no packet is dropped for want of
// a key.
func TestRekeyUnderLoad(t *testing.T) {
	l := newLab(t)
	session := []string{`rekey_after = "2s"`, `reject_after = "4s"`}
	a, b := l.twoHosts(func(a, b *node) { a.Session, b.Session = session, session })
	pingUntil(t, a.ns, overB, sessionWait)
	first := a.waitSession(b.ID, sessionWait)

	tcpStream(t, a.ns, b.ns, overB, streamOpts{Duration: 30 * time.Second, Timeout: 90 * time.Second})

	pa, pb := a.peer(b.ID), b.peer(a.ID)
	t.Logf("handshakes: %s %d (%d resumed), %s %d (%d resumed); drops %v / %v", a.ID, pa.Handshakes, pa.HandshakesResumed,
		b.ID, pb.Handshakes, pb.HandshakesResumed, pa.Drops, pb.Drops)
	if hs := max(pa.Handshakes, pb.Handshakes) - first.Handshakes; hs < 10 {
		t.Errorf("%d handshakes during 30 s with rekey_after 2s, want at least 10", hs)
	}
	if resumed := max(pa.HandshakesResumed, pb.HandshakesResumed) - first.HandshakesResumed; resumed < 8 {
		t.Errorf("%d of the rekeys were resumptions, want at least 8: the timed rekeys should resume with tickets", resumed)
	}
	if pa.SessionID == first.SessionID {
		t.Errorf("session ID %s never changed", first.SessionID)
	}
	if pa.Drops[dropNoKey] != 0 || pb.Drops[dropNoKey] != 0 {
		t.Errorf("packets dropped for want of a key: %s %d, %s %d", a.ID, pa.Drops[dropNoKey], b.ID, pb.Drops[dropNoKey])
	}
}
