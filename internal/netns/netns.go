// Package netns makes and drives Linux network namespaces for the demo and the
// end-to-end tests: named namespaces (`ip netns`), veth pairs between them,
// commands run inside them, and Go code run inside them on a locked thread.
// It needs root and iproute2; it never touches the caller's own namespace
// except to return to it.
package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// runDir is where `ip netns add` bind-mounts named namespaces.
const runDir = "/run/netns"

// Add makes the named namespace and brings its loopback up.
func Add(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if _, err := ip("netns", "add", name); err != nil {
		return err
	}
	if _, err := ip("-n", name, "link", "set", "lo", "up"); err != nil {
		_ = Delete(name)
		return err
	}
	return nil
}

// Delete removes the named namespace. A namespace that does not exist is not
// an error, so cleanups may call it unconditionally. Processes still running
// inside keep the namespace alive after its name is gone; kill them first.
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if !exists(name) {
		return nil
	}
	if _, err := ip("netns", "del", name); err != nil && exists(name) {
		return err
	}
	return nil
}

// Exec returns a command that runs `name args...` inside namespace ns
// (through `ip netns exec`, which also gives it the namespace's /etc/netns
// files and a matching /sys).
func Exec(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs `name args...` inside ns and returns its combined output. The
// error names the namespace and the command and carries the output.
func Run(ns string, name string, args ...string) (string, error) {
	out, err := Exec(ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netns %s: %s %s: %v: %s",
			ns, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Do runs fn on an OS thread switched into namespace ns and returns fn's
// error. Sockets made inside fn belong to ns for their whole life, so they may
// be used from any goroutine after Do returns. fn must not start goroutines
// that expect to be in ns: only the calling thread is switched.
func Do(ns string, fn func() error) error {
	target, err := unix.Open(nsPath(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: opening namespace: %w", ns, err)
	}
	defer unix.Close(target)

	// A fresh goroutine, so that if returning to the original namespace fails
	// it can exit still locked, and the runtime then throws the tainted thread
	// away instead of reusing it for unrelated goroutines.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netns %s: opening current namespace: %w", ns, err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netns %s: setns: %w", ns, err)
			return
		}
		fnErr := runGuarded(fn)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			done <- errors.Join(fnErr, fmt.Errorf("netns %s: returning to original namespace: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	return <-done
}

// runGuarded turns a panic in fn into an error, so a bad callback cannot
// leave the thread in the wrong namespace on its way up the stack.
func runGuarded(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in netns.Do callback: %v", r)
		}
	}()
	return fn()
}

// Veth makes a veth pair with end ifA in nsA and ifB in nsB, gives each end
// its address (IPv4 or IPv6; an invalid prefix means "no address") and brings
// both up. IPv6 addresses skip duplicate address detection so they are usable
// at once.
func Veth(nsA, ifA string, addrA netip.Prefix, nsB, ifB string, addrB netip.Prefix) error {
	for _, n := range []string{ifA, ifB} {
		if len(n) == 0 || len(n) > 15 {
			return fmt.Errorf("netns: interface name %q must be 1 to 15 characters", n)
		}
	}
	if _, err := ip("-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB); err != nil {
		return err
	}
	for _, end := range []struct {
		ns, ifname string
		addr       netip.Prefix
	}{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		if end.addr.IsValid() {
			if err := AddAddr(end.ns, end.ifname, end.addr); err != nil {
				return err
			}
		}
		if _, err := ip("-n", end.ns, "link", "set", end.ifname, "up"); err != nil {
			return err
		}
	}
	return nil
}

// AddAddr adds an address to an interface inside ns (IPv6 without duplicate
// address detection, so it is usable at once).
func AddAddr(ns, ifname string, addr netip.Prefix) error {
	args := []string{"-n", ns, "addr", "add", addr.String(), "dev", ifname}
	if addr.Addr().Is6() {
		args = append(args, "nodad")
	}
	_, err := ip(args...)
	return err
}

// ip runs iproute2 in the caller's namespace.
func ip(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func nsPath(name string) string { return runDir + "/" + name }

func exists(name string) bool {
	_, err := os.Stat(nsPath(name))
	return err == nil
}

// validName refuses names that would escape /run/netns or confuse `ip`.
func validName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "/ \t\n") || name == "." || name == ".." {
		return fmt.Errorf("netns: invalid namespace name %q", name)
	}
	return nil
}
