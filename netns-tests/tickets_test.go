package netnstests

import (
	"testing"
	"time"
)

// Issue 15 with the real binary: a client restarted after its sessions
// expired resumes with the ticket it saved, instead of a full handshake.
// b has no endpoint for a in its config, so a holds b's tickets; but b
// learns a's address from its packets and may start a full handshake of its
// own when its keys expire, which can meet a's resumption and replace it on
// b's side before b counts it. So the resumption is counted where it is
// made: a's first handshake after the restart (a's counters start at zero).
func TestRestartResumesWithSavedTicket(t *testing.T) {
	l := newLab(t)
	session := []string{`rekey_after = "2s"`, `reject_after = "4s"`}
	a, b := l.twoHosts(func(a, b *node) {
		a.Session, b.Session = session, session
		b.Peers[0].Endpoint = ""
	})
	pingUntil(t, a.ns, overB, sessionWait)
	waitFor(t, sessionWait, "a to hold b's ticket", func() bool {
		s, err := a.tryShow()
		p, ok := findPeer(s, b.ID)
		return err == nil && ok && p.Ticket != nil
	})
	if code := a.stop(); code != 0 {
		t.Fatalf("a exited with %d", code)
	}
	waitFor(t, 15*time.Second, "b's session with a to expire", func() bool { return b.peer(a.ID).SessionID == "" })
	before := b.peer(a.ID)
	a.start()
	pingUntil(t, a.ns, overB, sessionWait)
	after := b.peer(a.ID)
	t.Logf("b: handshakes %d -> %d, resumed %d -> %d", before.Handshakes, after.Handshakes, before.HandshakesResumed, after.HandshakesResumed)
	pa := a.peer(b.ID)
	if pa.HandshakesResumed == 0 {
		t.Fatalf("a's first handshake after its restart was not a resumption: %+v", pa)
	}
	if pa.Restored {
		t.Error("an expired session was restored")
	}
}
