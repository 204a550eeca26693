package netnstests

import (
	"os"
	"strings"
	"testing"
	"time"

	"stunnel/internal/netns"
)

// README.md, "Several tunnels with one name": a second st0 that shares the
// first one's run directory fails on the first one's socket. It must fail
// before it touches anything. Here host-a's own config is started again in
// a third namespace on the same segment: that start used to bring its
// tunnel up, handshake with b in host-a's name (b moved host-a's endpoint
// to the doomed copy and took its session, cutting the real host-a off
// until it handshook again) and write host-a's state file on its way out;
// under systemd it would do so again at every restart, every 5 s.
func TestSecondStartFailsBeforeTouchingPeers(t *testing.T) {
	l := newLab(t)
	nsA, nsB, nsC := l.ns("a"), l.ns("b"), l.ns("c")
	l.hub(map[string]string{nsA: "198.18.31.1/24", nsB: "198.18.31.2/24", nsC: "198.18.31.3/24"})
	a := l.newNode(nsA, "host-a", "198.18.31.1/24", "198.19.31.1/24")
	b := l.newNode(nsB, "host-b", "198.18.31.2/24", "198.19.31.2/24")
	a.addPeer(b, true, "198.19.31.2/32")
	b.addPeer(a, true, "198.19.31.1/32")
	a.start()
	b.start()
	pingUntil(t, nsA, "198.19.31.2", sessionWait)
	before := b.waitSession(a.ID, sessionWait)

	cmd := netns.Exec(nsC, stunnelBin, "up", "-c", a.cfgPath)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+a.runDir)
	out, code := upMustFail(t, cmd)
	if code != 1 || !strings.Contains(out, "is in use") {
		t.Fatalf("second start of host-a: exit %d, want 1 naming the socket in use; output:\n%s", code, out)
	}
	if strings.Contains(out, `msg="tunnel up"`) {
		t.Errorf("the second start brought its tunnel up before it failed:\n%s", out)
	}
	if _, err := os.Stat(a.statePath()); err == nil {
		t.Errorf("the second start wrote %s, host-a's state file", a.statePath())
	}
	time.Sleep(time.Second) // for anything it sent to reach b
	after := b.peer(a.ID)
	if after.Endpoint != before.Endpoint || after.SessionID != before.SessionID || after.Handshakes != before.Handshakes {
		t.Errorf("b's view of host-a changed: endpoint %s -> %s, session %.8s -> %.8s, handshakes %d -> %d",
			before.Endpoint, after.Endpoint, before.SessionID, after.SessionID, before.Handshakes, after.Handshakes)
	}
	ping(t, nsA, "198.19.31.2", 3)
}
