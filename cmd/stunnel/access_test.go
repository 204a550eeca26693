package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"stunnel/handshake"
	"stunnel/internal/roottest"
)

// copyTestBinary copies this test binary into a directory anyone may read,
// so it can run as another user (the go-build directory is root's, 0700).
func copyTestBinary(t *testing.T) (bin, dir string) {
	t.Helper()
	dir = roottest.PublicDir(t, "stunnel-access-")
	bin = filepath.Join(dir, "stunnel.test")
	roottest.CopyExecutable(t, os.Args[0], bin)
	return bin, dir
}

// runBinary runs the copied binary as `stunnel args...`, through wrap (a
// command and its options, e.g. setpriv) if given, as cred if not nil.
func runBinary(t *testing.T, bin string, cred *syscall.Credential, wrap []string, args ...string) (stderr string, code int) {
	t.Helper()
	argv := append(append(append([]string{}, wrap...), bin, "-test.run=^TestStunnelMainHelper$", "--"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "STUNNEL_TEST_RUN_MAIN=1")
	cmd.Dir = "/"
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", argv, err)
	}
	return errb.String(), code
}

// A file stunnel may not read says what to do, in one line: the usual
// cause is `check` or `show -c` run without sudo on root's /etc/stunnel
// (a member of a [control] group can name the tunnel with -i instead);
// root is refused only under the unit's sandbox, which has no
// CAP_DAC_OVERRIDE.
func TestUnreadableFilesSayWhatToDo(t *testing.T) {
	roottest.Require(t, "setuid to nobody (the binary runs as another user)")
	bin, dir := copyTestBinary(t)
	etc := filepath.Join(dir, "etc")
	if err := os.Mkdir(etc, 0o700); err != nil {
		t.Fatal(err)
	}
	peer, _ := handshake.ParsePrivateKey(strings.TrimSpace(mustGenkey(t)))
	config := "[interface]\nname = \"st0\"\npeer_id = \"a\"\nprivate_key_file = \"a.key\"\naddress = [\"198.19.0.1/24\"]\n\n" +
		"[[peer]]\nid = \"b\"\npublic_key = \"" + peer.PublicKey().String() + "\"\nallowed_ips = [\"198.19.0.2/32\"]\n"
	for _, d := range []string{etc, dir} {
		if err := os.WriteFile(filepath.Join(d, "st0.toml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "a.key"), []byte(mustGenkey(t)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	oneLine := func(what, stderr string, code, wantCode int, want string) {
		t.Helper()
		if code != wantCode || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d (want %d), want one line with %q:\n%s", what, code, wantCode, want, stderr)
		}
	}

	stderr, code := runBinary(t, bin, nobody, nil, "check", "-c", filepath.Join(etc, "st0.toml"))
	oneLine("check of a config in a 0700 root directory, as nobody", stderr, code, 2, "permission denied (run it as root, e.g. with sudo)")
	stderr, code = runBinary(t, bin, nobody, nil, "check", "-c", filepath.Join(dir, "st0.toml"))
	oneLine("check with a root-owned 0600 key, as nobody", stderr, code, 2, "permission denied (run it as root, e.g. with sudo)")
	stderr, code = runBinary(t, bin, nobody, nil, "show", "-c", filepath.Join(etc, "st0.toml"))
	oneLine("show -c of a config in a 0700 root directory, as nobody", stderr, code, 1, "stunnel show -i NAME")

	// Root without CAP_DAC_OVERRIDE, as under the unit, and a key file
	// that belongs to someone else.
	roottest.RequireTool(t, "setpriv", "util-linux")
	if err := os.Chown(filepath.Join(dir, "a.key"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	stderr, code = runBinary(t, bin, nil, []string{"setpriv", "--bounding-set=-dac_override,-dac_read_search"}, "check", "-c", filepath.Join(dir, "st0.toml"))
	oneLine("check as root without CAP_DAC_OVERRIDE, key owned by nobody", stderr, code, 2, "even as root (the systemd unit runs without CAP_DAC_OVERRIDE")
}
