// Package sdfd speaks the two halves of systemd's file-descriptor store that
// stunnel needs to keep its TUN device and UDP sockets across a restart:
// sd_notify with SCM_RIGHTS ("FDSTORE=1", "FDNAME=...") to hand descriptors
// to systemd, and LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES to take them back
// at the next start. Without systemd (NOTIFY_SOCKET and LISTEN_PID unset)
// every call is a no-op, so the daemon behaves as without a store.
//
// Why not github.com/coreos/go-systemd: its daemon.SdNotify cannot attach
// descriptors (no SCM_RIGHTS, checked in v22.7.0), so the sending half would
// be ours anyway; and activation.Files returns *os.File, which registers a
// non-blocking descriptor with the Go netpoller, the thing tundev and udpbind
// avoid (they poll(2) raw fds). The protocol is small and fixed
// (sd_notify(3), sd_listen_fds(3)); one package with both halves keeps it in
// one place and go.mod unchanged.
//
// Descriptors are plain ints here, never *os.File, for the same reason.
package sdfd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ListenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const ListenFDsStart = 3

// maxFDs bounds LISTEN_FDS; systemd's own FileDescriptorStoreMax is far below.
const maxFDs = 4096

// Notify sends state to the service manager with fds attached. It reports
// false, nil when NOTIFY_SOCKET is unset (not under systemd). The caller
// keeps its fds: the kernel gives systemd its own copies.
func Notify(state string, fds ...int) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] != '@' && path[0] != '/' {
		return false, fmt.Errorf("NOTIFY_SOCKET=%q is not an absolute path or abstract socket", path)
	}
	// x/sys turns a leading '@' into the abstract namespace's NUL.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("sd_notify: socket: %w", err)
	}
	defer unix.Close(fd)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(fd, []byte(state), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return false, fmt.Errorf("sd_notify: sending %q to NOTIFY_SOCKET: %w", firstLine(state), err)
	}
	return true, nil
}

// Store hands fds to systemd's descriptor store under name (FDSTORE=1,
// FDNAME=name). The unit needs FileDescriptorStoreMax= at least the number
// of stored descriptors, or systemd drops them (and logs why). Storing a
// descriptor that is already in the store (the same open file) is a no-op on
// systemd's side, so storing again after every start is harmless.
func Store(name string, fds ...int) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	if len(fds) == 0 {
		return false, errors.New("sd_notify FDSTORE: no descriptors given")
	}
	return Notify("FDSTORE=1\nFDNAME="+name, fds...)
}

// Remove asks systemd to close and forget the descriptors stored under name
// (FDSTOREREMOVE=1), e.g. when the config changed the interface name and
// the stored device must not come back at the next start.
func Remove(name string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	return Notify("FDSTOREREMOVE=1\nFDNAME=" + name)
}

// checkName applies systemd's rule for FDNAME: up to 255 printable ASCII
// characters without ':' (the LISTEN_FDNAMES separator).
func checkName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("fd store name %q must have 1 to 255 characters", name)
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || r == ':' {
			return fmt.Errorf("fd store name %q may hold only printable ASCII other than ':' and space", name)
		}
	}
	return nil
}

// Listen returns the descriptors systemd passed to this process, by name
// (LISTEN_FDNAMES; "unknown" for unnamed ones), in order. It returns an
// empty map when none were passed to this process (LISTEN_PID names another
// process or is unset). It unsets the three variables, so children never
// see them, and marks every returned descriptor close-on-exec. The caller
// owns the descriptors: close those it does not use.
func Listen() (map[string][]int, error) {
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	return parseListen(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
}

func parseListen(pidStr, nStr, namesStr string, self int) (map[string][]int, error) {
	out := map[string][]int{}
	if pidStr == "" {
		return out, nil
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return out, fmt.Errorf("LISTEN_PID=%q is not a number", pidStr)
	}
	if pid != self {
		return out, nil // meant for another process (we were forked or exec'd past it)
	}
	if nStr == "" {
		return out, nil // LISTEN_PID without LISTEN_FDS: nothing passed
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 0 || n > maxFDs {
		return out, fmt.Errorf("LISTEN_FDS=%q is not a count from 0 to %d", nStr, maxFDs)
	}
	var names []string
	if namesStr != "" {
		names = strings.Split(namesStr, ":")
	}
	for i := range n {
		fd := ListenFDsStart + i
		unix.CloseOnExec(fd)
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		out[name] = append(out[name], fd)
	}
	return out, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
