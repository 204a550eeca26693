package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/handshake"
)

// The real binary's behaviour, exit codes included, is tested by running this
// test binary as `stunnel`: TestStunnelMainHelper calls main when asked to.
func TestStunnelMainHelper(t *testing.T) {
	if os.Getenv("STUNNEL_TEST_RUN_MAIN") != "1" {
		t.Skip("helper process for the CLI tests")
	}
	args := os.Args
	demoSelfArgs = []string{"-test.run=^TestStunnelMainHelper$", "--"} // the demo's daemons are this binary too
	for i, a := range args {
		if a == "--" {
			os.Args = append([]string{"stunnel"}, args[i+1:]...)
			main()
		}
	}
	os.Exit(99)
}

// runStunnelWait bounds every runStunnel: the slowest command the tests
// run (a token key's up that fails) exits in a few seconds.
const runStunnelWait = 2 * time.Minute

// runStunnel runs `stunnel args...` with stdin and returns its output and
// exit code. Several tests run `up` here, in the test's own network
// namespace, expecting it to refuse before touching the system: if it
// starts instead, it is killed after runStunnelWait and the test fails,
// rather than hanging until go test's timeout, whose panic runs no cleanup
// and would leave that daemon and its TUN device on the host.
func runStunnel(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, err := runStunnelWithin(strings.NewReader(stdin), runStunnelWait, args...)
	if err != nil {
		t.Fatalf("%v; stdout %q, stderr %q", err, stdout, stderr)
	}
	return stdout, stderr, code
}

// runStunnelWithin is runStunnel's work: it kills the command after d (and
// if this test binary dies) and then returns an error saying so.
func runStunnelWithin(stdin io.Reader, d time.Duration, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestStunnelMainHelper$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "STUNNEL_TEST_RUN_MAIN=1")
	cmd.Stdin = stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out.String(), errb.String(), -1, fmt.Errorf("stunnel %v still ran after %v; killed", args, d)
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode(), nil
	case err != nil:
		return out.String(), errb.String(), -1, fmt.Errorf("running stunnel %v: %v", args, err)
	}
	return out.String(), errb.String(), 0, nil
}

// A command that does not exit (here pubkey, reading a stdin that never
// ends) is killed and reported, not waited for.
func TestRunStunnelKillsWhatDoesNotExit(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	start := time.Now()
	_, _, _, err = runStunnelWithin(r, time.Second, "pubkey")
	if err == nil || !strings.Contains(err.Error(), "still ran after") {
		t.Fatalf("a command that never exits: err %v, want it killed and reported", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v to give up after 1s", took)
	}
}

func TestGenkeyPubkey(t *testing.T) {
	priv, stderr, code := runStunnel(t, "", "genkey")
	if code != 0 || stderr != "" {
		t.Fatalf("genkey: exit %d, stderr %q", code, stderr)
	}
	if strings.Count(priv, "\n") != 1 || !strings.HasSuffix(priv, "\n") {
		t.Fatalf("genkey printed %d lines, want one", strings.Count(priv, "\n"))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(priv))
	if err != nil || len(raw) != 32 {
		t.Fatalf("genkey output is not base64 of 32 bytes")
	}
	again, _, _ := runStunnel(t, "", "genkey")
	if again == priv {
		t.Fatal("two genkey runs printed the same key")
	}

	pub, stderr, code := runStunnel(t, priv, "pubkey")
	if code != 0 || stderr != "" {
		t.Fatalf("pubkey: exit %d, stderr %q", code, stderr)
	}
	k, _ := handshake.ParsePrivateKey(strings.TrimSpace(priv))
	if pub != k.PublicKey().String()+"\n" {
		t.Errorf("pubkey printed %q, want %q", pub, k.PublicKey().String())
	}
	// Without a trailing newline, with surrounding blanks: still a key.
	if pub2, _, code := runStunnel(t, "  "+strings.TrimSpace(priv)+" ", "pubkey"); code != 0 || pub2 != pub {
		t.Errorf("pubkey of a padded key: exit %d, %q", code, pub2)
	}
}

func TestPubkeyMalformed(t *testing.T) {
	valid := strings.TrimSpace(mustGenkey(t))
	for name, in := range map[string]string{
		"empty":          "",
		"garbage":        "hello world\n",
		"typo":           valid[:10] + "!" + valid[11:] + "\n",
		"truncated":      valid[:40] + "\n",
		"two keys":       valid + "\n" + valid + "\n",
		"too long":       strings.Repeat("A", 10000),
		"zero key":       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"short but b64":  "c2hvcnQ=\n",
		"binary garbage": "\x00\xff\xfe",
	} {
		stdout, stderr, code := runStunnel(t, in, "pubkey")
		if code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
		if stdout != "" {
			t.Errorf("%s: printed %q on stdout", name, stdout)
		}
		if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "stunnel pubkey: ") {
			t.Errorf("%s: want a one-line error, got %q", name, stderr)
		}
		if s := strings.TrimSpace(in); len(s) >= 8 && strings.Contains(stderr, s[:8]) {
			t.Errorf("%s: error echoes the input: %q", name, stderr)
		}
	}
	if _, _, code := runStunnel(t, "", "pubkey", "extra"); code != 2 {
		t.Errorf("pubkey with an argument: exit %d, want 2", code)
	}
	if _, _, code := runStunnel(t, "", "genkey", "-x"); code != 2 {
		t.Errorf("genkey with an unknown flag: exit %d, want 2", code)
	}
}

func mustGenkey(t *testing.T) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := runGenkey(nil, &out, &errb); code != 0 {
		t.Fatalf("genkey exit %d: %s", code, errb.String())
	}
	return out.String()
}

func TestGenkeyWarnsAboutReadableFile(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o644, true}} {
		path := filepath.Join(t.TempDir(), "k")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, tc.mode)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Chmod(tc.mode); err != nil {
			t.Fatal(err)
		}
		var errb bytes.Buffer
		code := runGenkey(nil, f, &errb)
		f.Close()
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		if got := strings.Contains(errb.String(), "warning"); got != tc.warn {
			t.Errorf("mode %04o: warning %v, want %v (%q)", tc.mode, got, tc.warn, errb.String())
		}
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "a.key")
	if err := os.WriteFile(keyPath, []byte(mustGenkey(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	peerKey, _ := handshake.ParsePrivateKey(strings.TrimSpace(mustGenkey(t)))
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte(`[interface]
name = "st0"
peer_id = "a"
private_key_file = "a.key"
address = ["198.19.0.1/24"]

[[peer]]
id = "b"
public_key = "`+peerKey.PublicKey().String()+`"
endpoint = "198.18.0.2:51820"
allowed_ips = ["198.19.0.2/32"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runStunnel(t, "", "check", "-c", good)
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, good+": ok") {
		t.Errorf("valid config: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(`[interface]
name = "st0"
peer_id = "a"
private_key_file = "a.key"
address = ["198.19.0.1"]
mtu = 10
typo = 1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runStunnel(t, "", "check", "-c", bad)
	if code != 2 || stdout != "" {
		t.Errorf("invalid config: exit %d, stdout %q", code, stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	want := []string{bad + ":5: ", bad + ":6: ", bad + ":7: "}
	if len(lines) != len(want) {
		t.Fatalf("want %d problems, got:\n%s", len(want), stderr)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, l, want[i])
		}
	}

	lineRE := regexp.MustCompile(`^[^:]+:\d+: \S`)
	for _, args := range [][]string{
		{"check", "-c", filepath.Join(dir, "missing.toml")},
	} {
		_, stderr, code := runStunnel(t, "", args...)
		if code != 2 || !lineRE.MatchString(stderr) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	for _, args := range [][]string{{"check"}, {"check", "-c"}, {"check", "-c", good, "extra"}} {
		if _, stderr, code := runStunnel(t, "", args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// A -c that names a device is refused in one line, never read: /dev/zero
// used to fill memory until the runtime died with a stack trace.
func TestConfigThatIsADevice(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"check", "-c", "/dev/zero"}, 2},
		{[]string{"show", "-c", "/dev/zero"}, 1},
	} {
		_, stderr, code := runStunnel(t, "", c.args...)
		if code != c.code || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "/dev/zero") ||
			!strings.Contains(stderr, "character device, not a config file") {
			t.Errorf("stunnel %v: exit %d, stderr %q; want exit %d and one line saying it is no config file", c.args, code, stderr, c.code)
		}
	}
}
