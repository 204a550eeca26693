package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/roottest"
)

func TestDemoNeedsRoot(t *testing.T) {
	defer func(f func() int) { demoEUID = f }(demoEUID)
	demoEUID = func() int { return 1000 }
	var out, errb bytes.Buffer
	if code := runDemo(nil, &out, &errb); code != exitRuntime {
		t.Errorf("exit %d, want %d", code, exitRuntime)
	}
	if s := errb.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "needs root") {
		t.Errorf("stderr %q, want one line saying it needs root", s)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q", out.String())
	}
	if code := runDemo([]string{"extra"}, &out, &errb); code != exitBadConfig {
		t.Errorf("demo with an argument: exit %d, want 2", code)
	}
}

// needNetns skips loudly without root or iproute2, and fails instead under
// STUNNEL_REQUIRE_NETNS=1 (CI, `sudo make test`): a demo test that did not
// run must not pass there.
func needNetns(t *testing.T) {
	t.Helper()
	roottest.Require(t, "network namespaces")
	roottest.RequireTool(t, "ip", "iproute2")
}

var (
	nsNameRE  = regexp.MustCompile(`netns (stdemo-[ab]-\d+)`)
	tmpDirRE  = regexp.MustCompile(`\(files in ([^)]+)\)`)
	mbitRE    = regexp.MustCompile(`(?m)^  (through the tunnel|bare veth, no tunnel) .* ([0-9.]+) Mbit/s`)
	fiveRepRE = regexp.MustCompile(`5 packets transmitted, 5 received|reply from 198\.19\.0\.2: seq=5`)
)

// assertCleanedUp checks that the namespaces and directory named in a demo's
// output are gone.
func assertCleanedUp(t *testing.T, stdout string) {
	t.Helper()
	names := nsNameRE.FindAllStringSubmatch(stdout, -1)
	dir := tmpDirRE.FindStringSubmatch(stdout)
	if len(names) != 2 || dir == nil {
		t.Fatalf("output does not name two namespaces and a directory:\n%s", stdout)
	}
	for _, m := range names {
		if _, err := os.Stat("/run/netns/" + m[1]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left behind", m[1])
			exec.Command("ip", "netns", "del", m[1]).Run()
		}
	}
	if _, err := os.Stat(dir[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s left behind", dir[1])
		os.RemoveAll(dir[1])
	}
}

func TestDemo(t *testing.T) {
	needNetns(t)
	stdout, stderr, code := runStunnel(t, "", "demo")
	t.Logf("demo output:\n%s%s", stdout, stderr)
	if code != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if !fiveRepRE.MatchString(stdout) {
		t.Error("no five ping replies through the tunnel")
	}
	if m := mbitRE.FindAllStringSubmatch(stdout, -1); len(m) != 2 {
		t.Error("no throughput figures for the tunnel and the bare veth")
	}
	if !strings.Contains(stdout, "cleaned up") {
		t.Error("did not report its cleanup")
	}
	// It teaches the workflow: the configs it wrote, `stunnel show`, and
	// why its figure is not README's. Its state_file (in the temp dir,
	// so the demo does not write /var/lib/stunnel) is marked as the
	// demo's: copied to /etc/stunnel, the unit could not write it.
	for _, want := range []string{"[interface]", "[[peer]]", "stunnel show -c", "peer: host-b", "README's headline",
		`state_file = "host-a.state"   # demo only: on a real host leave it out`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	assertCleanedUp(t, stdout)
}

// Ctrl-C once the tunnel is up: the demo stops, says so, and leaves nothing behind.
func TestDemoInterrupted(t *testing.T) {
	needNetns(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestStunnelMainHelper$", "--", "demo")
	cmd.Env = append(os.Environ(), "STUNNEL_TEST_RUN_MAIN=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	up := make(chan bool, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "tunnel up") {
				up <- true
			}
		}
	}()
	select {
	case <-up:
	case <-time.After(60 * time.Second):
		cmd.Process.Signal(syscall.SIGINT)
		<-done
		cmd.Wait()
		t.Fatalf("tunnel not up within 60s:\n%s%s", out.String(), errb.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-done; exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("demo did not stop within 30s of SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitRuntime {
		t.Errorf("exit: %v, want status %d", err, exitRuntime)
	}
	if !strings.Contains(errb.String(), "stunnel demo: interrupted") {
		t.Errorf("stderr %q does not say it was interrupted", errb.String())
	}
	assertCleanedUp(t, out.String())
}

// A Ctrl-C in the demo's first second reaches a daemon before `stunnel up`
// catches signals, and it dies of the SIGTERM: that is a clean stop, not a
// cleanup failure. A daemon that fails its stop still is one.
func TestDemoStopDaemonSignalledEarly(t *testing.T) {
	for _, c := range []struct {
		script string // says "ready" once its signal disposition is set
		ok     bool
	}{
		{"echo ready; exec sleep 30", true},                                 // default disposition: dies of SIGTERM
		{"sleep 30 & trap 'kill $!; exit 0' TERM; echo ready; wait", true},  // catches it, exits 0
		{"sleep 30 & trap 'kill $!; exit 1' TERM; echo ready; wait", false}, // fails its stop
	} {
		cmd := exec.Command("sh", "-c", c.script)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%q: read %q, %v", c.script, line, err)
		}
		h := &demoHost{ns: "test", cmd: cmd, exited: make(chan struct{})}
		go func() { h.waitErr = cmd.Wait(); close(h.exited) }()
		err = stopDaemon(h)
		if (err == nil) != c.ok {
			t.Errorf("%q: stopDaemon = %v, want ok=%v", c.script, err, c.ok)
		}
	}
}
