package sdfd

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"stunnel/internal/netns"
	"stunnel/internal/roottest"
	"stunnel/tunnel/tundev"
	"stunnel/tunnel/udpbind"
)

// The restart under a stand-in for systemd: this process plays the old
// daemon (creates the device and sockets, stores copies, closes its own as
// it exits) and the service manager (keeps the stored copies, then starts
// the new daemon, a child process, with them as LISTEN_FDS). The child
// (TestFDStoreChild) asserts that the device, its addresses and routes, and
// the socket with the datagrams queued during the restart all survive.

const (
	childEnv  = "SDFD_TEST_CHILD"
	tunAddr   = "198.18.77.1/24"
	tunRoute  = "198.18.78.0/24"
	routedDst = "198.18.78.5:9"
	queued    = 5
)

func TestFDStoreKeepsDeviceAndSocketAcrossRestart(t *testing.T) {
	roottest.Require(t, "network namespaces and TUN devices")
	var suffix [3]byte
	rand.Read(suffix[:])
	ns := fmt.Sprintf("sdfd-%d-%x", os.Getpid(), suffix)
	if err := netns.Add(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Errorf("deleting namespace %s: %v", ns, err)
		}
	})
	s := newStandIn(t)

	// The old daemon: device with an address and a route, bound sockets.
	var dev *tundev.Device
	bind := udpbind.New()
	var port uint16
	err := netns.Do(ns, func() (err error) {
		if dev, err = tundev.Create("sdfd%d", 1420); err != nil {
			return err
		}
		_, port, err = bind.Open(0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	name, _ := dev.Name()
	for _, args := range [][]string{
		{"addr", "add", tunAddr, "dev", name},
		{"link", "set", name, "up"},
		{"route", "add", tunRoute, "dev", name},
	} {
		if _, err := netns.Run(ns, "ip", args...); err != nil {
			dev.Close()
			t.Fatal(err)
		}
	}
	index := ifindex(t, ns, name)

	tunFD, err := dev.DupFD()
	if err != nil {
		t.Fatal(err)
	}
	fd4, fd6, err := bind.DupFDs()
	if err != nil {
		t.Fatal(err)
	}
	stored := []struct {
		name string
		fd   int
	}{{"tun", tunFD}, {"udp4", fd4}, {"udp6", fd6}}
	var names []string
	var files []*os.File
	for _, st := range stored {
		if st.fd < 0 {
			continue // no IPv6 on this host
		}
		if ok, err := Store(st.name, st.fd); !ok || err != nil {
			t.Fatalf("Store(%s) = %v, %v", st.name, ok, err)
		}
		unix.Close(st.fd)
		fields, fds := s.receive(t)
		if fields["FDSTORE"] != "1" || fields["FDNAME"] != st.name || len(fds) != 1 {
			t.Fatalf("stand-in got %v with %d descriptors", fields, len(fds))
		}
		names = append(names, st.name)
		// A copy for the child; the stand-in keeps its own until cleanup.
		dup, err := unix.FcntlInt(uintptr(fds[0]), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, os.NewFile(uintptr(dup), st.name))
	}

	// The old daemon exits: every descriptor of its own is closed.
	if err := errors.Join(dev.Close(), bind.Close()); err != nil {
		t.Fatal(err)
	}
	if got := ifindex(t, ns, name); got != index {
		t.Fatalf("after the old daemon closed its descriptors, %s has index %d, want %d", name, got, index)
	}
	// Datagrams sent while no daemon runs wait in the stored socket.
	err = netns.Do(ns, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range queued {
			if _, err := c.Write([]byte{'q', byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The new daemon, with LISTEN_PID set to its own pid as systemd does
	// (the shell's pid, kept by exec).
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestFDStoreChild$", "-test.v")
	cmd.ExtraFiles = files
	cmd.Env = append(os.Environ(),
		childEnv+"=1", "NOTIFY_SOCKET=",
		"LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"),
		"SDFD_NS="+ns, "SDFD_NAME="+name, "SDFD_INDEX="+strconv.Itoa(index), "SDFD_PORT="+strconv.Itoa(int(port)))
	out, err := cmd.CombinedOutput()
	for _, f := range files {
		f.Close()
	}
	if err != nil || !strings.Contains(string(out), "CHILD OK") {
		t.Fatalf("new daemon: %v\n%s", err, out)
	}
	t.Logf("new daemon:\n%s", out)
}

// TestFDStoreChild is the new daemon; it runs only as the child above.
func TestFDStoreChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("runs only as the child of TestFDStoreKeepsDeviceAndSocketAcrossRestart")
	}
	ns, name := os.Getenv("SDFD_NS"), os.Getenv("SDFD_NAME")
	index, _ := strconv.Atoi(os.Getenv("SDFD_INDEX"))
	port, _ := strconv.Atoi(os.Getenv("SDFD_PORT"))

	fds, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
		t.Fatal("Listen left LISTEN_* in the environment for children to misread")
	}
	if len(fds["tun"]) != 1 || len(fds["udp4"]) != 1 {
		t.Fatalf("Listen = %v; want one tun and one udp4", fds)
	}
	// The daemon runs in the device's namespace (FromFD sets the MTU by name).
	var dev *tundev.Device
	if err := netns.Do(ns, func() (err error) { dev, err = tundev.FromFD(fds["tun"][0], 1420); return err }); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if got, _ := dev.Name(); got != name {
		t.Fatalf("adopted device is %s, want %s", got, name)
	}
	if got := ifindex(t, ns, name); got != index {
		t.Fatalf("device index %d after the restart, want %d: it was recreated", got, index)
	}
	addrs, err := netns.Run(ns, "ip", "-4", "addr", "show", "dev", name)
	if err != nil || !strings.Contains(addrs, tunAddr) {
		t.Fatalf("address %s gone after the restart: %v\n%s", tunAddr, err, addrs)
	}
	routes, err := netns.Run(ns, "ip", "route", "show", "dev", name)
	if err != nil || !strings.Contains(routes, tunRoute) {
		t.Fatalf("route %s gone after the restart: %v\n%s", tunRoute, err, routes)
	}

	fd6 := -1
	if len(fds["udp6"]) == 1 {
		fd6 = fds["udp6"][0]
	}
	bind := udpbind.NewInherited(fds["udp4"][0], fd6)
	fns, got, err := bind.Open(uint16(port))
	if err != nil {
		t.Fatal(err)
	}
	if int(got) != port {
		t.Fatalf("inherited bind on port %d, want %d", got, port)
	}
	timer := time.AfterFunc(10*time.Second, func() { bind.Close(); dev.Close() }) // ends blocked reads on failure
	defer timer.Stop()
	defer bind.Close()
	bufs, sizes, eps := make([][]byte, bind.BatchSize()), make([]int, bind.BatchSize()), make([]conn.Endpoint, bind.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	seen := 0
	for seen < queued {
		n, err := fns[0](bufs, sizes, eps)
		if err != nil {
			t.Fatalf("receiving the datagrams queued during the restart: got %d of %d: %v", seen, queued, err)
		}
		for i := range n {
			if sizes[i] != 2 || bufs[i][0] != 'q' || int(bufs[i][1]) != seen {
				t.Fatalf("datagram %d is %q", seen, bufs[i][:sizes[i]])
			}
			seen++
		}
	}

	// The adopted device still carries traffic: a datagram routed into it
	// comes out of Read.
	err = netns.Do(ns, func() error {
		c, err := net.Dial("udp4", routedDst)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("through the tun"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tb, tsizes := [][]byte{make([]byte, 65536)}, []int{0}
	for {
		n, err := dev.Read(tb, tsizes, 16)
		if err != nil {
			t.Fatalf("reading from the adopted device: %v", err)
		}
		if n == 1 && strings.Contains(string(tb[0][16:16+tsizes[0]]), "through the tun") {
			break
		}
	}
	fmt.Println("CHILD OK")
}

func ifindex(t *testing.T, ns, name string) int {
	t.Helper()
	var idx int
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	if err != nil {
		t.Fatalf("interface %s in %s: %v", name, ns, err)
	}
	return idx
}

// A descriptor that is not what it claims is refused and closed, so the
// daemon logs it and creates a fresh one.
func TestAdoptRefusesWrongDescriptors(t *testing.T) {
	roottest.Require(t, "TUN devices")
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if _, err := tundev.FromFD(p[0], 1420); err == nil || !strings.Contains(err.Error(), "not an attached TUN") {
		t.Fatalf("FromFD(pipe) = %v; want a refusal", err)
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFD, 0); err == nil {
		t.Fatal("FromFD left a refused descriptor open")
	}

	tcp, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	in := udpbind.NewInherited(tcp, -1)
	if _, got, err := in.Open(0); err != nil || got == 0 || in.Adopted() || in.Refused() == nil {
		t.Fatalf("Inherited.Open of a TCP socket = port %d, %v, adopted %v, refused %v; want fresh sockets and a refusal", got, err, in.Adopted(), in.Refused())
	}
	in.Close()
	if _, err := unix.FcntlInt(uintptr(tcp), unix.F_GETFD, 0); err == nil {
		t.Fatal("Inherited.Open left a refused socket open")
	}

	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(udp, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(udp)
	bound := uint16(sa.(*unix.SockaddrInet4).Port)
	in = udpbind.NewInherited(udp, -1)
	// After a config change of listen_port: the old socket is refused and
	// the bind opens the new port.
	_, got, err := in.Open(0)
	if err != nil || got != bound || !in.Adopted() {
		t.Fatalf("Inherited.Open(0) = port %d, %v, adopted %v; want the inherited port %d", got, err, in.Adopted(), bound)
	}
	in.Close()
	// Later Opens bind fresh sockets.
	if _, got, err := in.Open(0); err != nil || got == 0 {
		t.Fatalf("second Open = %d, %v", got, err)
	}
	in.Close()

	udp, _ = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	unix.Bind(udp, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	sa, _ = unix.Getsockname(udp)
	bound = uint16(sa.(*unix.SockaddrInet4).Port)
	in = udpbind.NewInherited(udp, -1)
	want := freeUDPPort(t, bound)
	if _, got, err := in.Open(want); err != nil || got != want || in.Adopted() ||
		in.Refused() == nil || !strings.Contains(in.Refused().Error(), "port") {
		t.Fatalf("Inherited.Open(%d) of a socket on %d = %d, %v, refused %v; want a fresh socket on %d and a port refusal",
			want, bound, got, err, in.Refused(), want)
	}
	in.Close() // its new sockets may have reused the refused one's number
	if _, err := unix.FcntlInt(uintptr(udp), unix.F_GETFD, 0); err == nil {
		t.Fatal("Inherited.Open left a refused socket open")
	}
	in.Close()
}

// freeUDPPort returns a port other than not that the kernel has just
// handed out, free on every address of both families (a dual-stack
// socket on the wildcard held it). A fixed pick such as not+1 may be held
// by any other socket on the host, a parallel package's test included.
func freeUDPPort(t *testing.T, not uint16) uint16 {
	t.Helper()
	for {
		c, err := net.ListenPacket("udp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
		if port != not {
			return port
		}
	}
}
