// Package roottest gates tests that need root (network namespaces, TUN
// devices, CAP_NET_ADMIN): without root they skip with a loud message, and
// with STUNNEL_REQUIRE_NETNS=1 (set by CI and `sudo make test`) they fail
// instead, so a missing privilege can never pass for a green run.
package roottest

import (
	"os"
	"testing"
)

// Require skips or fails t, as above, unless the process is root. what
// says what the test needs root for, e.g. "network namespaces".
func Require(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("STUNNEL_REQUIRE_NETNS") == "1" {
		t.Fatalf("STUNNEL_REQUIRE_NETNS=1 but not root: cannot use %s", what)
	}
	t.Skipf("SKIPPING: needs root for %s (run `sudo make test`; STUNNEL_REQUIRE_NETNS=1 makes this a failure)", what)
}
