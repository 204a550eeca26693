package control

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// CheckFree judges the socket path as Listen does: whatever Listen would
// refuse to start over, `up` refuses before it brings the tunnel up. It
// used to dial the path and call any failure free: a symlink to a dead
// socket, a file that is not a socket, a socket of another user's, or a
// live daemon too busy to take the connection (EAGAIN) all read as free,
// and the tunnel came up only for Listen to fail afterwards.
func TestCheckFreeJudgesAsListen(t *testing.T) {
	runDir(t)
	if err := prepareDir(Dir()); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	for _, c := range []struct {
		name, what, want string
		plant            func(t *testing.T, path string)
	}{
		{"st1", "a symlink to a dead socket", "is a symlink, not a socket", func(t *testing.T, path string) {
			target := filepath.Join(elsewhere, "dead.sock")
			deadSocket(t, target)
			symlink(t, target, path)
		}},
		{"st2", "a symlink to a live socket", "is a symlink, not a socket", func(t *testing.T, path string) {
			target := filepath.Join(elsewhere, "live.sock")
			ln, err := net.Listen("unix", target)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			symlink(t, target, path)
		}},
		{"st3", "a regular file", "is not a socket", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"st4", "a dead socket of another user's", "belongs to uid 65534", func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("SKIPPED: giving a socket to another user needs root")
			}
			deadSocket(t, path)
			if err := os.Lchown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
		{"st5", "a live socket whose backlog is full (the dial fails with EAGAIN)", "checking whether it is live", func(t *testing.T, path string) {
			fullSocket(t, path)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := SocketPath(c.name)
			c.plant(t, path)
			err := CheckFree(c.name)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckFree over %s: %v; want an error saying %q", c.what, err, c.want)
			}
			if _, lerr := Listen(Config{Name: c.name, Handlers: statusOnly("{}")}); lerr == nil || lerr.Error() != err.Error() {
				t.Errorf("over %s, CheckFree said %v but Listen %v", c.what, err, lerr)
			}
		})
	}

	// A stale socket of ours is free, and left for Listen to remove.
	stale := SocketPath("st6")
	deadSocket(t, stale)
	if err := CheckFree("st6"); err != nil {
		t.Errorf("CheckFree over a stale socket: %v", err)
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Errorf("CheckFree removed the stale socket: %v", err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// fullSocket listens at path with a backlog of 0 and fills it with one
// connection nobody accepts: the next connect fails with EAGAIN, though a
// listener is there.
func fullSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c2, err := net.Dial("unix", path); !errors.Is(err, syscall.EAGAIN) {
		if err == nil {
			c2.Close()
		}
		t.Fatalf("a second connect to a full backlog: %v, want EAGAIN", err)
	}
}
