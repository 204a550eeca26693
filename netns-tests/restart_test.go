package netnstests

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Scenario 8a: one side stopped and started again re-establishes on its own.
// Without a state file (state_file = "") the side that kept running still
// holds the old session, which the new process cannot know; traffic from it
// must recover without help. (With one, the session comes back:
// TestRestartKeepsSessions.)
func TestRestart(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(func(a, b *node) { b.NoStateFile = true })
	pingUntil(t, a.ns, overB, sessionWait)
	old := a.waitSession(b.ID, sessionWait)

	if code := b.stop(); code != 0 {
		t.Fatalf("b exited with %d on SIGTERM, want 0", code)
	}
	b.start()
	// From the side that did not restart, over its stale session.
	pingUntil(t, a.ns, overB, 40*time.Second)
	ping(t, b.ns, overA, 3)
	if now := a.peer(b.ID); now.SessionID == old.SessionID {
		t.Errorf("a still uses session %s after b restarted", old.SessionID)
	}
	tcpStream(t, a.ns, b.ns, overB, streamOpts{Size: 1 << 20})
}

// Scenario 8b: SIGHUP reload. Adding peer d and removing peer c leaves the
// unchanged peer b's session (same ID) and a transfer across the reload
// untouched; a broken config on SIGHUP keeps the old one running.
func TestReload(t *testing.T) {
	l := newLab(t)
	hosts := map[string]string{}
	nodes := map[string]*node{}
	for i, n := range []string{"a", "b", "c", "d"} {
		ns := l.ns(n)
		under := fmt.Sprintf("198.18.8.%d/24", i+1)
		hosts[ns] = under
		nodes[n] = l.newNode(ns, "rl-"+n, under, fmt.Sprintf("198.19.8.%d/24", i+1))
	}
	l.hub(hosts)
	a, b, c, d := nodes["a"], nodes["b"], nodes["c"], nodes["d"]
	a.addPeer(b, true, overlayOf(b)+"/32")
	a.addPeer(c, true, overlayOf(c)+"/32")
	for _, x := range []*node{b, c, d} {
		x.addPeer(a, true, overlayOf(a)+"/32")
	}
	for _, x := range []*node{a, b, c, d} {
		x.start()
	}
	pingUntil(t, a.ns, overlayOf(b), sessionWait)
	pingUntil(t, a.ns, overlayOf(c), sessionWait)
	before := a.waitSession(b.ID, sessionWait)

	// A transfer a -> b, paused half way across the reload.
	stream := startPausedStream(t, a.ns, b.ns, overlayOf(b), 8<<20, 4<<20)

	a.Peers = a.Peers[:1] // keep b, drop c
	a.addPeer(d, true, overlayOf(d)+"/32")
	a.writeConfig()
	a.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "a to list d and not c after SIGHUP", func() bool {
		s, err := a.tryShow()
		_, hasC := findPeer(s, c.ID)
		_, hasD := findPeer(s, d.ID)
		return err == nil && hasD && !hasC
	})
	if _, err := stream.finish(); err != nil {
		t.Fatalf("transfer to the unchanged peer across the reload: %v", err)
	}
	after := a.peer(b.ID)
	if after.SessionID != before.SessionID || after.Handshakes != before.Handshakes {
		t.Errorf("reload disturbed b's session: before %s (%d handshakes), after %s (%d)",
			before.SessionID, before.Handshakes, after.SessionID, after.Handshakes)
	}
	pingUntil(t, d.ns, overlayOf(a), sessionWait)
	ping(t, a.ns, overlayOf(d), 3)
	if err := tryPing(c.ns, overlayOf(a), 2, 1); err == nil {
		t.Error("c, removed from a's config, still reaches a")
	}

	// A broken config: SIGHUP is refused, the running config stays.
	logBefore := len(a.log())
	a.writeRaw("[interface\nthis is not toml\n")
	a.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "a to log the rejected config "+a.cfgPath, func() bool {
		return strings.Contains(a.log()[logBefore:], a.cfgPath)
	})
	if a.exited() {
		t.Fatalf("a exited (code %d) on SIGHUP with a broken config", a.exitCode)
	}
	s := a.show()
	_, hasB := findPeer(s, b.ID)
	_, hasD := findPeer(s, d.ID)
	if !hasB || !hasD || len(s.Peers) != 2 {
		t.Fatalf("after the broken reload a's peers are %+v, want b and d", s.Peers)
	}
	if p := a.peer(b.ID); p.SessionID != before.SessionID {
		t.Errorf("broken reload changed b's session from %s to %s", before.SessionID, p.SessionID)
	}
	ping(t, a.ns, overlayOf(b), 3)
	ping(t, a.ns, overlayOf(d), 3)
}
