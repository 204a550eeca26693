// Package netnstests runs the real stunnel binary between test hosts made of
// Linux network namespaces joined by veth pairs, pushes real traffic through
// the tunnels and asserts on what arrives and on `stunnel show --json`.
//
// Needs root and iproute2 (ping, tc and ethtool for some scenarios). Without
// root every test skips loudly, unless STUNNEL_REQUIRE_NETNS=1, which turns
// the skip into a failure (CI sets it). STUNNEL_TEST_RACE=1 builds the daemon
// under test with -race. Tests run one after another: each one
// builds its own hosts, and removes them, its processes and its files in
// t.Cleanup, also when it fails.
//
// Addresses (README.md, "Development"): underlay 198.18.0.0/16, overlay and LAN subnets
// 198.19.0.0/16, IPv6 in fd00::/8. Nothing else is ever addressed.
package netnstests

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	// runID prefixes every namespace of this run, so parallel runs never clash
	// and the leak check at the end finds exactly ours.
	runID string
	// stunnelBin is the binary under test, built once by TestMain.
	stunnelBin string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var b [3]byte
	_, _ = rand.Read(b[:])
	runID = "stt" + hex.EncodeToString(b[:])

	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "stunnel-netns-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "netns-tests: making temp dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		stunnelBin = filepath.Join(dir, "stunnel")
		args := []string{"build", "-o", stunnelBin}
		if os.Getenv("STUNNEL_TEST_RACE") == "1" {
			// The daemons themselves under the race detector: slower, but
			// real traffic, rekeys and reloads exercise every lock.
			args = append(args, "-race")
		}
		build := exec.Command(goBinary(), append(args, "./cmd/stunnel")...)
		build.Dir = ".." // the module root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "netns-tests: building stunnel: %v\n%s", err, out)
			return 1
		}
	}

	code := m.Run()

	if left := leftoverNamespaces(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "netns-tests: namespaces left behind: %s\n", strings.Join(left, " "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// goBinary finds go the way the Makefile does: sudo's PATH often lacks it.
func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/usr/local/go/bin/go"
}

func leftoverNamespaces() []string {
	entries, _ := os.ReadDir("/run/netns")
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), runID) {
			left = append(left, e.Name())
		}
	}
	return left
}

// requireNetns is called first by every test: it skips loudly without root,
// or fails when STUNNEL_REQUIRE_NETNS=1 says these tests must run.
func requireNetns(t *testing.T) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "not running as root"
	case stunnelBin == "":
		why = "stunnel binary not built"
	default:
		for _, tool := range []string{"ip", "ping", "ethtool"} {
			if _, err := exec.LookPath(tool); err != nil {
				why = tool + " is not installed (Debian: iproute2 iputils-ping ethtool)"
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("STUNNEL_REQUIRE_NETNS") == "1" {
		t.Fatalf("STUNNEL_REQUIRE_NETNS=1 but network namespace tests cannot run: %s", why)
	}
	t.Skipf("SKIPPING NETWORK NAMESPACE TEST: %s; run `sudo make test` to run it", why)
}
