package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Privileges (issue 12, finding 8). The daemon needs CAP_NET_ADMIN for its
// whole life (the TUN device, addresses, routes, and routes again on
// reload, SO_MARK, SO_RCVBUFFORCE) and CAP_NET_BIND_SERVICE only to bind a
// listen_port or a [metrics] listen port below 1024, and CAP_CHOWN only
// when [control] names groups
// (to give the role sockets their group); it runs as uid 0 only so it can
// read root-owned 0600 key files, which needs no capability. Everything
// else is dropped.
//
// Why by re-executing, and at the start rather than after setup:
// capabilities are per thread, and capset(2)/PR_CAPBSET_DROP act on the
// calling thread only. Go runs on many threads, and with cgo linked (the
// net package's resolver) syscall.AllThreadsSyscall refuses (ENOTSUP), so
// a capset after setup would leave most threads with full root. Instead one
// locked thread narrows its bounding, inheritable and ambient sets and
// re-executes the binary: the new image starts every thread with exactly
// the kept capabilities (for uid 0 the kernel grants the bounding set at
// exec; for another uid, the ambient set). Setup needs nothing more than
// what is kept, so dropping first is only narrower.

// envNarrowed marks the re-executed process, so a kernel that does not
// narrow as expected causes one warning, never an exec loop.
const envNarrowed = "STUNNEL_CAPS_NARROWED"

// startArgs are the arguments we were started with, kept before anything
// (the CLI tests' helper) rewrites os.Args, so a re-exec repeats exactly
// the command line that started us.
var startArgs = append([]string(nil), os.Args...)

// keptCaps is the capability mask the daemon keeps for the ports it binds
// (boundPorts).
func keptCaps(ports []int, socketGroups bool) uint64 {
	c := uint64(1) << unix.CAP_NET_ADMIN
	for _, p := range ports {
		if p > 0 && p < 1024 {
			c |= 1 << unix.CAP_NET_BIND_SERVICE
		}
	}
	if socketGroups { // [control] groups: the sockets are given to groups root is not in
		c |= 1 << unix.CAP_CHOWN
	}
	return c
}

// boundPorts are the ports `up` binds, for keptCaps: the UDP listen_port and
// the [metrics] listener's TCP port (checked by conf; 0 when there is none).
// The metrics listener is opened after the narrowing, so a port below 1024
// there needs CAP_NET_BIND_SERVICE as much as a low listen_port does.
func boundPorts(listenPort int, metricsListen string) []int {
	ports := []int{listenPort}
	if _, port, err := net.SplitHostPort(metricsListen); err == nil {
		if n, err := strconv.Atoi(port); err == nil {
			ports = append(ports, n)
		}
	}
	return ports
}

// procCaps reads the Cap* masks of a process from /proc/PID/status ("self"
// for us).
func procCaps(pid string) (map[string]uint64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	caps := make(map[string]uint64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasPrefix(k, "Cap") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%s/status: %s: %v", pid, k, err)
		}
		caps[k] = n
	}
	return caps, sc.Err()
}

// narrowPrivileges re-executes the daemon holding only keptCaps, unless it
// already holds no more than that. It returns only if nothing needed doing,
// or with an error saying why it could not (the caller warns and runs on).
func narrowPrivileges(ports []int, socketGroups bool) error {
	keep := keptCaps(ports, socketGroups)
	caps, err := procCaps("self")
	if err != nil {
		return fmt.Errorf("reading our capabilities: %w", err)
	}
	extra := (caps["CapEff"] | caps["CapPrm"] | caps["CapAmb"]) &^ keep
	if extra == 0 {
		return nil
	}
	if os.Getenv(envNarrowed) != "" {
		return fmt.Errorf("still holding capabilities %#x beyond %#x after re-executing", extra, keep)
	}
	if caps["CapEff"]&(1<<unix.CAP_SETPCAP) == 0 {
		return fmt.Errorf("holding capabilities %#x beyond %#x without CAP_SETPCAP to drop them; narrow them where we are started (systemd CapabilityBoundingSet=)", extra, keep)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding our executable to re-execute: %w", err)
	}
	runtime.LockOSThread() // the bounding set below is this thread's; exec from it
	last := lastCap()
	for c := 0; c <= last; c++ {
		if keep&(1<<c) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
			}
		}
	}
	// Inheritable = kept (ambient needs it), permitted/effective unchanged
	// until exec.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = uint32(keep), uint32(keep>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	if os.Geteuid() != 0 { // no root exec rule: carry the kept ones as ambient
		for c := 0; c <= last; c++ {
			if keep&(1<<c) != 0 && caps["CapPrm"]&(1<<c) != 0 {
				if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
					return fmt.Errorf("raising ambient capability %d: %w", c, err)
				}
			}
		}
	}
	env := append(os.Environ(), envNarrowed+"=1")
	return fmt.Errorf("re-executing %s with fewer capabilities: %w", exe, syscall.Exec(exe, startArgs, env))
}

// lastCap is the highest capability number the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}
