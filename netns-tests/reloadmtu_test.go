package netnstests

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// An mtu change applies only at the next restart, and every reload that
// asks for it says so with the MTU the device really has: after two reloads
// to mtu 1400 the running MTU is still 1420, not the 1400 of the first.
func TestReloadMTUTwiceReportsRunningMTU(t *testing.T) {
	l := newLab(t)
	a, _ := l.twoHosts(nil)
	a.MTU = "1400"
	for i := 1; i <= 2; i++ {
		a.writeConfig()
		a.signal(syscall.SIGHUP)
		waitFor(t, 10*time.Second, "reload warning number "+string(rune('0'+i)), func() bool {
			return strings.Count(a.log(), "take effect at the next restart") == i
		})
	}
	for _, line := range strings.Split(a.log(), "\n") {
		if strings.Contains(line, "take effect at the next restart") && !strings.Contains(line, "running_mtu=1420") {
			t.Errorf("reload reports a running MTU other than the device's 1420: %s", line)
		}
	}
	if got := linkMTU(t, l, a.ns); got != 1420 {
		t.Errorf("device MTU %d after reloads, want 1420 until restart", got)
	}
}
