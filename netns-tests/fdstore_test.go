package netnstests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"stunnel/internal/netns"
)

// serviceManager stands in for systemd's half of the descriptor-store
// protocol: a NOTIFY_SOCKET that keeps the descriptors sent with FDSTORE=1
// (by FDNAME, a file stored twice kept once, FDSTOREREMOVE honoured), and
// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES for the next start.
type serviceManager struct {
	t    *testing.T
	path string
	fd   int
	done chan struct{}

	mu    sync.Mutex // guards store and msgs
	store []storedFD
	msgs  []string
}

type storedFD struct {
	name string
	fd   int
}

func newServiceManager(t *testing.T, dir string) *serviceManager {
	t.Helper()
	m := &serviceManager{t: t, path: filepath.Join(dir, "notify"), done: make(chan struct{})}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.fd = fd
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: m.path}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Usec: 100_000} // lets the loop notice stop
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go m.loop(stop)
	t.Cleanup(func() {
		close(stop)
		<-m.done
		unix.Close(m.fd)
		m.stopService()
	})
	return m
}

func (m *serviceManager) loop(stop chan struct{}) {
	defer close(m.done)
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*16))
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(m.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil {
			continue // timeout or EINTR
		}
		var fds []int
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, c := range cmsgs {
				if got, err := unix.ParseUnixRights(&c); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		m.handle(string(buf[:n]), fds)
	}
}

func (m *serviceManager) handle(msg string, fds []int) {
	fields := map[string]string{}
	for _, l := range strings.Split(msg, "\n") {
		k, v, _ := strings.Cut(l, "=")
		fields[k] = v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	name := fields["FDNAME"]
	switch {
	case fields["FDSTORE"] == "1":
		for _, fd := range fds {
			if m.storedLocked(fd) {
				unix.Close(fd) // systemd keeps one copy of a file
				continue
			}
			m.store = append(m.store, storedFD{name, fd})
		}
		return
	case fields["FDSTOREREMOVE"] == "1":
		kept := m.store[:0]
		for _, s := range m.store {
			if s.name == name {
				unix.Close(s.fd)
			} else {
				kept = append(kept, s)
			}
		}
		m.store = kept
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// storedLocked reports whether fd is the same open file as a stored one
// (kcmp, as systemd's same_fd does).
func (m *serviceManager) storedLocked(fd int) bool {
	pid := os.Getpid()
	for _, s := range m.store {
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), 0 /* KCMP_FILE */, uintptr(s.fd), uintptr(fd), 0)
		if errno == 0 && r == 0 {
			return true
		}
	}
	return false
}

func (m *serviceManager) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, s := range m.store {
		out = append(out, s.name)
	}
	return out
}

func (m *serviceManager) sawReady() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range m.msgs {
		if strings.Contains(msg, "READY=1") {
			return true
		}
	}
	return false
}

// command wraps a daemon command line as systemd would start it: NOTIFY_SOCKET
// and, when the store holds any, the stored descriptors from 3 on,
// LISTEN_FDS/LISTEN_FDNAMES, and LISTEN_PID set to the daemon's own pid (the
// shell's, kept by exec).
func (m *serviceManager) command(ns string, argv ...string) *exec.Cmd {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = nil
	var files []*os.File
	var names []string
	for _, s := range m.store {
		dup, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			m.t.Fatal(err)
		}
		files = append(files, os.NewFile(uintptr(dup), s.name))
		names = append(names, s.name)
	}
	cmd := netns.Exec(ns, argv[0], argv[1:]...)
	if len(files) > 0 {
		cmd = netns.Exec(ns, "sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`}, argv...)...)
	}
	cmd.ExtraFiles = files
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+m.path)
	if len(files) > 0 {
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	return cmd
}

// stopService is `systemctl stop`: the store is emptied.
func (m *serviceManager) stopService() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.store {
		unix.Close(s.fd)
	}
	m.store = nil
}

// startManaged is start() under the stand-in service manager.
func (n *node) startManaged(m *serviceManager) {
	n.l.t.Helper()
	n.writeConfig()
	n.launch(m.command(n.ns, stunnelBin, "up", "-c", n.cfgPath), "READY=1, show answers, device exists", m.sawReady)
}

func devIndex(t *testing.T, ns string) int {
	t.Helper()
	idx := -1
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(devName)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", devName, ns, err)
	}
	return idx
}

// TestFDStoreRestartKeepsDevice: under a stand-in for systemd, b hands its
// TUN device and UDP sockets to the descriptor store; across a clean restart
// the device (same index), its addresses and routes exist the whole time,
// also while no daemon runs, and the new process reuses them. A full stop
// (the store emptied) removes the device.
func TestFDStoreRestartKeepsDevice(t *testing.T) {
	l := newLab(t)
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", underA, nsB, "u0", underB)
	a := l.newNode(nsA, "host-a", underA, overA+"/24", over6A+"/64")
	b := l.newNode(nsB, "host-b", underB, overB+"/24", over6B+"/64")
	a.addPeer(b, true, overB+"/32", over6B+"/128")
	b.addPeer(a, true, overA+"/32", over6A+"/128")
	m := newServiceManager(t, l.dir)
	a.start()
	b.startManaged(m)
	waitFor(t, 5*time.Second, "b to store tun and udp4", func() bool {
		s := strings.Join(m.names(), ",")
		return strings.Contains(s, "tun") && strings.Contains(s, "udp4")
	})
	pingUntil(t, nsA, overB, sessionWait)
	index := devIndex(t, nsB)
	addrs := l.run(nsB, "ip", "addr", "show", "dev", devName)
	routes := l.run(nsB, "ip", "route", "show", "dev", devName)
	t.Logf("stored: %v", m.names())

	if code := b.stop(); code != 0 {
		t.Fatalf("b exited with %d on SIGTERM, want 0", code)
	}
	if got := devIndex(t, nsB); got != index {
		t.Fatalf("while no daemon runs, %s has index %d, want %d", devName, got, index)
	}
	if got := l.run(nsB, "ip", "route", "show", "dev", devName); got != routes {
		t.Fatalf("routes changed while no daemon runs:\nbefore\n%s\nafter\n%s", routes, got)
	}

	stopped := time.Now()
	b.startManaged(m)
	if got := devIndex(t, nsB); got != index {
		t.Fatalf("after the restart %s has index %d, want %d: the device was recreated", devName, got, index)
	}
	if got := l.run(nsB, "ip", "addr", "show", "dev", devName); got != addrs {
		t.Fatalf("addresses changed across the restart:\nbefore\n%s\nafter\n%s", addrs, got)
	}
	if got := l.run(nsB, "ip", "route", "show", "dev", devName); got != routes {
		t.Fatalf("routes changed across the restart:\nbefore\n%s\nafter\n%s", routes, got)
	}
	for _, want := range []string{"reusing the TUN device kept by systemd", "reusing the UDP sockets kept by systemd"} {
		if !strings.Contains(b.log(), want) {
			t.Fatalf("b's log does not say %q", want)
		}
	}
	if got := len(m.names()); got > 3 {
		t.Fatalf("the store holds %d descriptors after the restart (%v); a restart must not add copies", got, m.names())
	}
	pingUntil(t, nsA, overB, 40*time.Second)
	ping(t, nsB, overA, 3)
	t.Logf("traffic a -> b back %d ms after b was stopped (sessions are not restored yet: the stale session times out)",
		time.Since(stopped).Milliseconds())

	// systemctl stop: the daemon exits, systemd closes the store, the device goes.
	if code := b.stop(); code != 0 {
		t.Fatalf("b exited with %d on SIGTERM, want 0", code)
	}
	m.stopService()
	waitFor(t, 5*time.Second, "the device to go once the store is emptied", func() bool { return !b.hasDevice() })
}

// TestFDStoreWithoutSystemd: with no NOTIFY_SOCKET the daemon behaves as
// before: stop removes the device.
func TestFDStoreWithoutSystemd(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	pingUntil(t, a.ns, overB, sessionWait)
	if code := b.stop(); code != 0 {
		t.Fatalf("b exited with %d, want 0", code)
	}
	if b.hasDevice() {
		t.Fatalf("%s still exists after a stop without systemd", devName)
	}
}

// TestFDStoreIgnoresOtherNamespace: the unit was moved into a network
// namespace (a NetworkNamespacePath= drop-in) and restarted, so the store
// still holds the device and sockets of the namespace it left. They are
// not adopted: the device is not in the daemon's namespace (its addresses
// and routes cannot be set there, and the start failed on every restart),
// and the sockets would send by the old namespace's routes. The start makes
// its own and the store forgets the old ones, so the old device goes.
func TestFDStoreIgnoresOtherNamespace(t *testing.T) {
	l := newLab(t)
	nsOld, nsNew := l.ns("old"), l.ns("new")
	n := l.newNode(nsOld, "host-b", underB, overB+"/24")
	m := newServiceManager(t, l.dir)
	n.startManaged(m)
	waitFor(t, 5*time.Second, "the store to hold tun and udp4", func() bool {
		s := strings.Join(m.names(), ",")
		return strings.Contains(s, "tun") && strings.Contains(s, "udp4")
	})
	if code := n.stop(); code != 0 {
		t.Fatalf("exit %d on SIGTERM, want 0", code)
	}

	n.ns = nsNew
	n.startManaged(m)
	for _, want := range []string{"not reusing the TUN device kept by systemd", "not reusing the UDP sockets kept by systemd"} {
		if !strings.Contains(n.log(), want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	port := ":" + strconv.Itoa(listenPort)
	if out := l.run(nsNew, "ss", "-Hlun"); !strings.Contains(out, port) {
		t.Errorf("no UDP socket on %s in the daemon's namespace:\n%s", port, out)
	}
	waitFor(t, 5*time.Second, "the old namespace's device to go", func() bool {
		_, err := netns.Run(nsOld, "ip", "link", "show", "dev", devName)
		return err != nil
	})
	if out := l.run(nsOld, "ss", "-Hlun"); strings.Contains(out, port) {
		t.Errorf("the old namespace still has the UDP socket on %s:\n%s", port, out)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("exit %d on SIGTERM, want 0", code)
	}
}

// TestFDStoreLeavesSameNamedDeviceAlone: as above, but the new namespace
// already has an interface of the tunnel's name (not ours). The kept
// device's name matches it, yet it is another namespace's: adopting it set
// that interface's MTU, addresses and routes. Now the start refuses the
// name as with no store, and leaves the interface as it was.
func TestFDStoreLeavesSameNamedDeviceAlone(t *testing.T) {
	l := newLab(t)
	nsOld, nsNew, nsPeer := l.ns("old"), l.ns("new"), l.ns("peer")
	n := l.newNode(nsOld, "host-b", underB, overB+"/24")
	m := newServiceManager(t, l.dir)
	n.startManaged(m)
	waitFor(t, 5*time.Second, "the store to hold tun", func() bool { return strings.Contains(strings.Join(m.names(), ","), "tun") })
	if code := n.stop(); code != 0 {
		t.Fatalf("exit %d on SIGTERM, want 0", code)
	}
	l.veth(nsNew, devName, "", nsPeer, "v0", "")
	before := l.run(nsNew, "ip", "addr", "show", "dev", devName)

	cmd := m.command(nsNew, stunnelBin, "up", "-c", n.cfgPath)
	cmd.Env = append(cmd.Env, "STUNNEL_RUN_DIR="+n.runDir)
	out, code := upMustFail(t, cmd)
	if code != 1 || !strings.Contains(out, "not a TUN device") {
		t.Errorf("exit %d, want 1 saying the name is taken by another kind of interface; output:\n%s", code, out)
	}
	if after := l.run(nsNew, "ip", "addr", "show", "dev", devName); after != before {
		t.Errorf("the other interface %s was changed:\nbefore\n%s\nafter\n%s", devName, before, after)
	}
}
