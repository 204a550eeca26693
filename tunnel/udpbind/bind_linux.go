package udpbind

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"stunnel/internal/busypoll"
)

// Bind is the Linux UDP bind. Its methods may be called from any
// goroutines: Open, Close and SetMark are serialised by mu; Send runs
// concurrently with everything (see conns.inFd); each ReceiveFunc may be
// called by several goroutines but serves them one at a time.
type Bind struct {
	mu   sync.Mutex // serialises Open, Close, SetMark
	mark uint32     // SO_MARK for sockets; guarded by mu

	cur   atomic.Pointer[conns] // open sockets, nil when closed; stored under mu
	noGSO atomic.Bool           // a GSO send failed with EIO: send datagram by datagram from now on

	gsoSends    atomic.Uint64
	groMessages atomic.Uint64
	dropped     atomic.Uint64
	sendDropped atomic.Uint64

	scratch sync.Pool // *sendScratch

	sendmmsg func(fd int, msgs []unix.Mmsghdr) (int, unix.Errno) // set by New
}

// Stats are counters of a Bind since New.
type Stats struct {
	GSOSends    uint64 // messages sent with UDP_SEGMENT carrying more than one datagram
	GROMessages uint64 // messages received with UDP_GRO that held more than one datagram
	Dropped     uint64 // received datagrams dropped: longer than the caller's buffer, or truncated
	SendDropped uint64 // datagrams the kernel refused to send (Send returned the first error)
}

// conns is one Open's sockets. Every call that uses v4, v6 or efd holds
// inFd read-locked for as long as it does (blocking in poll included);
// Close sets closing, wakes blocked calls through efd and takes inFd
// write-locked before it closes the descriptors, so no call can use a
// closed (or reused) descriptor number.
type conns struct {
	v4, v6  *sock // v6 is nil when the host has no IPv6
	efd     int   // eventfd, written once by Close
	closing atomic.Bool
	inFd    sync.RWMutex
}

// New returns a closed Bind.
func New() *Bind {
	b := &Bind{sendmmsg: sendmmsg}
	b.scratch.New = func() any { return new(sendScratch) }
	return b
}

var _ conn.Bind = (*Bind)(nil)

// BatchSize is the most datagrams per Send and per ReceiveFunc call.
func (b *Bind) BatchSize() int { return BatchSize }

// ParseEndpoint reads "ip:port" (IPv6 in brackets, optionally with a zone).
// Host names are not resolved.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	e, err := parseEndpoint(s)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Stats returns the counters.
func (b *Bind) Stats() Stats {
	return Stats{GSOSends: b.gsoSends.Load(), GROMessages: b.groMessages.Load(), Dropped: b.dropped.Load(),
		SendDropped: b.sendDropped.Load()}
}

// Open binds an IPv4 and an IPv6 socket to port (0: any free port, the
// same for both) and returns their receive functions, IPv4 first. Without
// IPv6 on the host it goes on with IPv4 alone.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, 0, fmt.Errorf("udpbind: eventfd: %w", err)
	}
	c := &conns{efd: efd}
	tries := 1
	if port == 0 {
		tries = v6PortTries
	}
	var fd4, fd6 int
	var got uint16
	for try := 0; ; try++ {
		fd4, got, err = openSocket(false, port, b.mark)
		if err != nil {
			unix.Close(efd)
			return nil, 0, err
		}
		fd6, _, err = openSocket(true, got, b.mark)
		if err == nil {
			break
		}
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL) {
			fd6 = -1
			break
		}
		unix.Close(fd4)
		if !errors.Is(err, unix.EADDRINUSE) || try+1 >= tries {
			unix.Close(efd)
			return nil, 0, err
		}
	}
	c.v4 = newSock(b, c, fd4, false)
	fns := []conn.ReceiveFunc{c.v4.receiveIPv4}
	if fd6 >= 0 {
		c.v6 = newSock(b, c, fd6, true)
		fns = append(fns, c.v6.receiveIPv6)
	}
	b.cur.Store(c)
	return fns, got, nil
}

// Close releases the sockets: blocked and later receives and sends of this
// Open return net.ErrClosed. Closing a closed Bind does nothing.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.cur.Swap(nil)
	if c == nil {
		return nil
	}
	c.closing.Store(true)
	var one [8]byte
	one[0] = 1 // any non-zero count makes the eventfd readable; host order does not matter
	_, werr := unix.Write(c.efd, one[:])
	c.inFd.Lock() // every call inside an fd has left
	err := unix.Close(c.v4.fd)
	if c.v6 != nil {
		if e := unix.Close(c.v6.fd); err == nil {
			err = e
		}
	}
	unix.Close(c.efd)
	c.v4.spin.Close() // no receive sleeps any more (inFd)
	if c.v6 != nil {
		c.v6.spin.Close()
	}
	c.inFd.Unlock()
	if werr != nil {
		return fmt.Errorf("udpbind: waking receivers on close: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("udpbind: closing sockets: %w", err)
	}
	return nil
}

// SetMark sets SO_MARK on the sockets now and on those of later Opens.
func (b *Bind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mark = mark
	c := b.cur.Load()
	if c == nil {
		return nil
	}
	for _, s := range []*sock{c.v4, c.v6} {
		if s == nil {
			continue
		}
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fmt.Errorf("udpbind: SO_MARK %d on %s socket: %w", mark, s.family(), err)
		}
	}
	return nil
}

// openSocket makes a non-blocking UDP socket bound to the wildcard address
// and port and returns it with the port it got.
func openSocket(v6 bool, port uint16, mark uint32) (fd int, got uint16, err error) {
	family, name := unix.AF_INET, "IPv4"
	if v6 {
		family, name = unix.AF_INET6, "IPv6"
	}
	fail := func(what string, err error) (int, uint16, error) {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, 0, fmt.Errorf("udpbind: %s socket on port %d: %s: %w", name, port, what, err)
	}
	fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		fd = -1
		return fail("socket", err)
	}
	// Forcing the sizes needs CAP_NET_ADMIN, which the tunnel has; without
	// it the plain options apply, capped by net.core.[rw]mem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fail("SO_MARK", err)
		}
	}
	// Without GRO every datagram is its own message: slower, still right.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	var sa unix.Sockaddr
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return fail("IPV6_RECVPKTINFO", err)
		}
		sa = &unix.SockaddrInet6{Port: int(port)}
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
			return fail("IP_PKTINFO", err)
		}
		sa = &unix.SockaddrInet4{Port: int(port)}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	switch a := local.(type) {
	case *unix.SockaddrInet4:
		got = uint16(a.Port)
	case *unix.SockaddrInet6:
		got = uint16(a.Port)
	}
	return fd, got, nil
}

// wait blocks in poll(2) until fd has one of events or Close signals; the
// kernel wakes this thread directly, without the Go netpoller. With a spin
// Poller it polls without sleeping for a moment first, and sleeps in the
// netpoller instead (internal/busypoll.Poller.Sleep).
func (c *conns) wait(fd int, events int16, pfd *[2]unix.PollFd, spin *busypoll.Poller) error {
	pfd[0] = unix.PollFd{Fd: int32(fd), Events: events}
	pfd[1] = unix.PollFd{Fd: int32(c.efd), Events: unix.POLLIN}
	if spin != nil && !c.closing.Load() && spin.Poll(pfd[:]) {
		if pfd[1].Revents != 0 {
			return net.ErrClosed
		}
		return nil
	}
	for {
		if c.closing.Load() {
			return net.ErrClosed
		}
		var err error
		if spin != nil {
			err = spin.Sleep(pfd[:]) // in the netpoller
		} else {
			_, err = unix.Poll(pfd[:], -1)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("udpbind: poll: %w", err)
		}
		if pfd[1].Revents != 0 {
			return net.ErrClosed
		}
		return nil
	}
}
