package netnstests

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failedStartWait is how long a `stunnel up` that must refuse to start may
// take to exit: it fails before (or right after) making its device.
const failedStartWait = readyWait

// upMustFail runs cmd, a `stunnel up` the test expects to exit at once,
// and returns its combined output and exit code. If it starts and runs
// instead (the refusal it tests has regressed), it is killed and the test
// fails: waiting on it without a deadline hung the test until go test's
// own timeout, which panics without running any cleanup, so the daemon,
// its TUN device and its namespace outlived the run.
func upMustFail(t *testing.T, cmd *exec.Cmd) (out string, code int) {
	t.Helper()
	out, code, err := runWithin(cmd, failedStartWait)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, out)
	}
	return out, code
}

// runWithin runs cmd in its own process group, killed with the test binary,
// and returns its combined output and exit code once it exits; after d it
// kills the group, waits for it, and returns an error saying so.
func runWithin(cmd *exec.Cmd, d time.Duration) (out string, code int, err error) {
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close() // the child has its copies; ours would keep a stored TUN device alive
	}
	if err != nil {
		return "", -1, fmt.Errorf("starting %s: %v", strings.Join(cmd.Args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case werr := <-done:
		return string(buf.Bytes()), exitCode(werr), nil
	case <-time.After(d):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return string(buf.Bytes()), -1, fmt.Errorf("%s still ran after %s; killed", strings.Join(cmd.Args, " "), d)
	}
}

// runWithin returns what a command that exits said and its code, and kills
// one that does not exit in time, with whatever it started, instead of
// waiting for it.
func TestRunWithinKillsWhatDoesNotExit(t *testing.T) {
	out, code, err := runWithin(exec.Command("sh", "-c", "echo said; exit 3"), 10*time.Second)
	if err != nil || code != 3 || out != "said\n" {
		t.Fatalf("exiting command: out %q code %d err %v; want \"said\\n\", 3, nil", out, code, err)
	}

	// A shell that starts a child of its own, as `ip netns exec` may.
	cmd := exec.Command("sh", "-c", "sleep 600 & echo $!; wait")
	start := time.Now()
	out, _, err = runWithin(cmd, 500*time.Millisecond)
	if err == nil {
		t.Fatalf("a command that never exits was reported as exited: %q", out)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("runWithin took %v to give up after 500ms", took)
	}
	var child int
	if _, serr := fmt.Sscan(out, &child); serr != nil || child <= 0 {
		t.Fatalf("no child pid in %q: %v", out, serr)
	}
	// Gone, or a zombie not yet reaped by whoever inherited it.
	waitFor(t, 5*time.Second, "the command's child to be gone", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			return true
		}
		_, rest, _ := strings.Cut(string(stat), ") ")
		return strings.HasPrefix(rest, "Z")
	})
}
