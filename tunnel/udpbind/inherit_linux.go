package udpbind

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// Inherited is a Bind whose first Open adopts UDP sockets this process got
// back from systemd's descriptor store (internal/sdfd) instead of binding new
// ones, so datagrams that arrive during a restart wait in the socket's
// receive queue rather than meeting a closed port. Later Opens (after a
// Close) bind new sockets as Bind does.
type Inherited struct {
	*Bind
	mu       sync.Mutex // guards the fields below
	fd4, fd6 int        // -1 once Open ran or Release closed them
	adopted  bool       // the first Open took them
	refused  error      // why the first Open did not
}

// NewInherited returns a closed Bind that will adopt fd4 (an IPv4 UDP
// socket) and fd6 (IPv6, or -1 when there was none) at its first Open. It
// owns both from now on: an Open that refuses them closes them, and
// Release closes them if Open never runs.
func NewInherited(fd4, fd6 int) *Inherited {
	return &Inherited{Bind: New(), fd4: fd4, fd6: fd6}
}

// Open adopts the inherited sockets the first time, if they are bound to
// port (any port when port is 0); else, and every later time, it is
// Bind.Open. Sockets it refuses (another port after a config change, not a
// UDP socket) are closed, Refused returns why, and Open binds new ones: an
// inheritance that does not fit costs a few packets, never the start.
func (in *Inherited) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	in.mu.Lock()
	fd4, fd6 := in.fd4, in.fd6
	in.fd4, in.fd6 = -1, -1
	in.mu.Unlock()
	if fd4 < 0 {
		return in.Bind.Open(port)
	}
	fns, got, err := in.Bind.adopt(fd4, fd6, port)
	if err == nil {
		in.mu.Lock()
		in.adopted = true
		in.mu.Unlock()
		return fns, got, nil
	}
	unix.Close(fd4)
	if fd6 >= 0 {
		unix.Close(fd6)
	}
	in.mu.Lock()
	in.refused = err
	in.mu.Unlock()
	return in.Bind.Open(port)
}

// Adopted reports whether the first Open took the inherited sockets.
func (in *Inherited) Adopted() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.adopted
}

// Refused returns why the first Open did not adopt the inherited sockets,
// or nil.
func (in *Inherited) Refused() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.refused
}

// Release closes inherited sockets that Open never adopted.
func (in *Inherited) Release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, fd := range []int{in.fd4, in.fd6} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	in.fd4, in.fd6 = -1, -1
}

// adopt is Open on existing sockets.
func (b *Bind) adopt(fd4, fd6 int, port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	got, err := checkInherited(fd4, false, port, b.mark)
	if err != nil {
		return nil, 0, err
	}
	if fd6 >= 0 {
		got6, err := checkInherited(fd6, true, got, b.mark)
		if err != nil {
			return nil, 0, err
		}
		if got6 != got {
			return nil, 0, fmt.Errorf("udpbind: inherited IPv6 socket is on port %d, IPv4 on %d", got6, got)
		}
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, 0, fmt.Errorf("udpbind: eventfd: %w", err)
	}
	c := &conns{efd: efd}
	c.v4 = newSock(b, c, fd4, false)
	fns := []conn.ReceiveFunc{c.v4.receiveIPv4}
	if fd6 >= 0 {
		c.v6 = newSock(b, c, fd6, true)
		fns = append(fns, c.v6.receiveIPv6)
	}
	b.cur.Store(c)
	return fns, got, nil
}

// checkInherited verifies fd is a UDP socket of the family bound to port
// (any when 0) and sets the options openSocket would, since a socket from an
// older binary may lack one. It returns the bound port.
func checkInherited(fd int, v6 bool, port uint16, mark uint32) (uint16, error) {
	family, name := unix.AF_INET, "IPv4"
	if v6 {
		family, name = unix.AF_INET6, "IPv6"
	}
	fail := func(what string, err error) (uint16, error) {
		return 0, fmt.Errorf("udpbind: inherited %s socket (fd %d): %s: %w; binding a new one instead is the fix", name, fd, what, err)
	}
	for _, o := range []struct {
		opt, want int
		what      string
	}{{unix.SO_DOMAIN, family, "address family"}, {unix.SO_TYPE, unix.SOCK_DGRAM, "type"}, {unix.SO_PROTOCOL, unix.IPPROTO_UDP, "protocol"}} {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.opt)
		if err != nil {
			return fail(o.what, err)
		}
		if v != o.want {
			return fail(o.what, fmt.Errorf("%d, want %d", v, o.want))
		}
	}
	var got uint16
	switch a := mustSockname(fd).(type) {
	case *unix.SockaddrInet4:
		got = uint16(a.Port)
	case *unix.SockaddrInet6:
		got = uint16(a.Port)
	default:
		return fail("getsockname", fmt.Errorf("not bound"))
	}
	if got == 0 || (port != 0 && got != port) {
		return fail("port", fmt.Errorf("bound to %d, want %d", got, port))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail("O_NONBLOCK", err)
	}
	unix.CloseOnExec(fd)
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fail("SO_MARK", err)
		}
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return fail("IPV6_RECVPKTINFO", err)
		}
	} else if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		return fail("IP_PKTINFO", err)
	}
	return got, nil
}

func mustSockname(fd int) unix.Sockaddr {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	return sa
}

// DupFDs returns new close-on-exec descriptors for the open sockets (fd6 is
// -1 without IPv6), for handing to systemd's descriptor store; the caller
// closes them once handed over.
func (b *Bind) DupFDs() (fd4, fd6 int, err error) {
	c := b.cur.Load()
	if c == nil {
		return -1, -1, fmt.Errorf("udpbind: DupFDs on a closed bind")
	}
	c.inFd.RLock()
	defer c.inFd.RUnlock()
	if c.closing.Load() {
		return -1, -1, fmt.Errorf("udpbind: DupFDs on a closed bind")
	}
	fd4, err = unix.FcntlInt(uintptr(c.v4.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("udpbind: duplicating the IPv4 socket: %w", err)
	}
	fd6 = -1
	if c.v6 != nil {
		if fd6, err = unix.FcntlInt(uintptr(c.v6.fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			unix.Close(fd4)
			return -1, -1, fmt.Errorf("udpbind: duplicating the IPv6 socket: %w", err)
		}
	}
	return fd4, fd6, nil
}

var _ conn.Bind = (*Inherited)(nil)
