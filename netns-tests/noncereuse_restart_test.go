package netnstests

import (
	"syscall"
	"testing"
	"time"
)

// TestNoNonceReuseAcrossRestarts: a capture of every data packet on b's
// underlay across three clean restarts of b and one kill -9 holds no
// (receiver index, counter) pair twice. Today every restart handshakes anew;
// once sessions are restored from the state file this is the test that
// proves the restored counters never go back. It prints how long traffic
// took to come back after each start.
func TestNoNonceReuseAcrossRestarts(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	l.noOffloads(a.ns, "u0")
	l.noOffloads(b.ns, "u0")
	capt := startDataCapture(t, b.ns, "u0")
	pingUntil(t, a.ns, overB, sessionWait)
	ping(t, a.ns, overB, 3)

	for i, how := range []string{"SIGTERM", "SIGTERM", "SIGKILL", "SIGTERM"} {
		if how == "SIGKILL" {
			b.signal(syscall.SIGKILL)
			waitFor(t, stopWait, "b to die of SIGKILL", b.exited)
		} else if code := b.stop(); code != 0 {
			t.Fatalf("restart %d: b exited with %d on SIGTERM, want 0", i+1, code)
		}
		b.start()
		started := time.Now()
		pingUntil(t, a.ns, overB, 40*time.Second)
		t.Logf("restart %d (%s): traffic a -> b back %d ms after b was ready", i+1, how, time.Since(started).Milliseconds())
		ping(t, b.ns, overA, 3)
	}
	pkts := capt.stop()
	receivers := map[uint32]bool{}
	for _, p := range pkts {
		receivers[p.Receiver] = true
	}
	if len(receivers) < 2 {
		t.Fatalf("capture saw %d receiver indices across 4 restarts; it is not seeing the sessions", len(receivers))
	}
	requireNoNonceReuse(t, pkts)
}
