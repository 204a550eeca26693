package etcdtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// stopTB records what Binary says when it fails or skips; both end the
// calling goroutine, as testing's own do.
type stopTB struct {
	testing.TB
	fatal, skip string
}

func (s *stopTB) Helper()           {}
func (s *stopTB) Fatal(args ...any) { s.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (s *stopTB) Skip(args ...any)  { s.skip = fmt.Sprint(args...); runtime.Goexit() }

// An etcd without etcdctl (Debian's etcd-server only suggests
// etcd-client) is named as such at once, not as a member that never
// became healthy.
func TestBinaryNeedsEtcdctl(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	t.Setenv("CI", "")
	for _, require := range []string{"", "1"} {
		t.Setenv("STUNNEL_REQUIRE_NETNS", require)
		tb := &stopTB{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); Binary(tb) }()
		<-done
		got := tb.skip
		if require == "1" {
			got = tb.fatal
		}
		if !strings.Contains(got, "etcdctl") || !strings.Contains(got, "etcd-client") {
			t.Errorf("STUNNEL_REQUIRE_NETNS=%q: fatal %q, skip %q; want the %s to name etcdctl and etcd-client",
				require, tb.fatal, tb.skip, map[string]string{"": "skip", "1": "failure"}[require])
		}
	}
}

// A member's client and peer ports differ even when the port source draws
// the same number twice in a row.
func TestNewClusterClientAndPeerPortsDiffer(t *testing.T) {
	draws := []int{23000, 23000, 23000, 24000}
	port := func(string) int { p := draws[0]; draws = draws[1:]; return p }
	ms := newCluster(t, []string{"198.18.0.1"}, []string{"ns"}, nil, port)
	if ms[0].ClientURL != "http://198.18.0.1:23000" || ms[0].peerURL != "http://198.18.0.1:24000" {
		t.Fatalf("client %s, peer %s: want ports 23000 and 24000", ms[0].ClientURL, ms[0].peerURL)
	}
}
