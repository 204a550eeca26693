// Package roottest gates tests that need root (network namespaces, TUN
// devices, CAP_NET_ADMIN) or a program: without it they skip with a loud
// message, and where every test must run (Strict: CI, `sudo make test`)
// they fail instead, so a missing privilege or program can never pass for
// a green run.
package roottest

import (
	"io"
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether a test that cannot run must fail rather than
// skip: STUNNEL_REQUIRE_NETNS=1 (`sudo make test` and CI set it) or CI set
// (a runner that kept CI but not STUNNEL_REQUIRE_NETNS: sudo keeps only
// the one). Require, RequireTool and etcdtest decide by it alike.
func Strict() bool {
	return os.Getenv("STUNNEL_REQUIRE_NETNS") == "1" || os.Getenv("CI") != ""
}

// geteuid is os.Geteuid; the tests stand in for a user that is not root.
var geteuid = os.Geteuid

// Require skips or fails t, as above, unless the process is root. what
// says what the test needs root for, e.g. "network namespaces".
func Require(t testing.TB, what string) {
	t.Helper()
	if geteuid() == 0 {
		return
	}
	if Strict() {
		t.Fatalf("STUNNEL_REQUIRE_NETNS=1 (or CI) but not root: cannot use %s", what)
	}
	t.Skipf("SKIPPING: needs root for %s (run `sudo make test`; STUNNEL_REQUIRE_NETNS=1 makes this a failure)", what)
}

// RequireTool skips t loudly unless the program name is on PATH; pkg is
// the Debian package that has it. CI installs every such program (.ci/run),
// so where Strict a missing program fails t: a test that silently did not
// run must not pass for one that passed.
func RequireTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if Strict() {
		t.Fatalf("STUNNEL_REQUIRE_NETNS=1 (or CI) but %s is not on PATH: apt-get install %s (.ci/run does)", name, pkg)
	}
	t.Skipf("SKIPPING: needs %s (apt-get install %s); STUNNEL_REQUIRE_NETNS=1 makes this a failure", name, pkg)
}

// CopyExecutable copies the executable at src to dst (mode 0755), for
// tests that run it as another user: the go build cache and the test's
// own temporary directory are not theirs to read.
func CopyExecutable(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// PublicDir makes a directory that every user may enter and read (0755),
// removed when t ends, for an executable CopyExecutable puts there: t's
// own TempDir is not theirs to enter.
func PublicDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
