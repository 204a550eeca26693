package roottest

import (
	"runtime"
	"testing"
)

// outcome runs gate against a stand-in for t and says whether it let the
// test go on, skipped it or failed it.
func outcome(t *testing.T, gate func(testing.TB)) string {
	r := &recorder{TB: t, got: "ran"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gate(r)
	}()
	<-done
	return r.got
}

// recorder stands in for a *testing.T: Fatalf and Skipf end the gate's
// goroutine, as they end a test's, and are recorded.
type recorder struct {
	testing.TB
	got string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.got = "failed"
	runtime.Goexit()
}
func (r *recorder) Skipf(string, ...any) {
	r.got = "skipped"
	runtime.Goexit()
}

// Require (no root) and RequireTool (no program) decide alike whether a
// test that cannot run fails or skips: Require used to skip under CI when
// STUNNEL_REQUIRE_NETNS was not kept, where RequireTool failed.
func TestRequireAndRequireToolDecideAlike(t *testing.T) {
	saved := geteuid
	t.Cleanup(func() { geteuid = saved })
	geteuid = func() int { return 1000 }
	t.Setenv("PATH", t.TempDir()) // no program at all
	for _, c := range []struct {
		netns, ci string
		want      string
	}{
		{"", "", "skipped"},
		{"1", "", "failed"},
		{"", "true", "failed"},
		{"1", "true", "failed"},
		{"0", "", "skipped"},
	} {
		t.Setenv("STUNNEL_REQUIRE_NETNS", c.netns)
		t.Setenv("CI", c.ci)
		if got := outcome(t, func(tb testing.TB) { Require(tb, "tests") }); got != c.want {
			t.Errorf("STUNNEL_REQUIRE_NETNS=%q CI=%q: Require %s without root, want %s", c.netns, c.ci, got, c.want)
		}
		if got := outcome(t, func(tb testing.TB) { RequireTool(tb, "no-such-program", "none") }); got != c.want {
			t.Errorf("STUNNEL_REQUIRE_NETNS=%q CI=%q: RequireTool %s without the program, want %s", c.netns, c.ci, got, c.want)
		}
	}
	// Root: Require lets the test run, strict or not.
	geteuid = func() int { return 0 }
	if got := outcome(t, func(tb testing.TB) { Require(tb, "tests") }); got != "ran" {
		t.Errorf("Require as root: %s", got)
	}
}
