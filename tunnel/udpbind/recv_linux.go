package udpbind

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"stunnel/internal/busypoll"
	"stunnel/internal/nbsys"
)

// sock is one socket of an Open with its receive state.
type sock struct {
	b  *Bind
	c  *conns
	fd int
	v6 bool

	// mu serialises receives; it guards everything below. Messages
	// msgs[next:got] came from the last recvmmsg and are not yet fully
	// handed out; off is how far into msgs[next] we are.
	mu    sync.Mutex
	msgs  [recvMsgs]unix.Mmsghdr
	iovs  [recvMsgs]unix.Iovec
	names [recvMsgs]unix.RawSockaddrInet6 // large enough for IPv4 too
	ctrl  [recvMsgs][recvCmsgSpace]byte
	bufs  [recvMsgs][]byte
	got   int
	next  int
	off   int
	gso   int       // segment size of msgs[next]
	ep    *Endpoint // endpoint of msgs[next]; nil until worked out
	pfd   [2]unix.PollFd
	spin  busypoll.Poller // polls a moment before sleeping (internal/busypoll)

	// Endpoints handed out, so a flow's datagrams share one.
	cache   map[epKey]*Endpoint
	last    *Endpoint
	lastKey epKey
}

type epKey struct {
	dst     netip.AddrPort
	scope   uint32
	src     netip.Addr
	ifindex int32
}

func newSock(b *Bind, c *conns, fd int, v6 bool) *sock {
	s := &sock{b: b, c: c, fd: fd, v6: v6, cache: make(map[epKey]*Endpoint)}
	mem := make([]byte, recvMsgs*recvBufSize)
	for i := range s.bufs {
		s.bufs[i] = mem[i*recvBufSize : (i+1)*recvBufSize : (i+1)*recvBufSize]
		s.iovs[i].Base = &s.bufs[i][0]
		s.msgs[i].Hdr.Iov = &s.iovs[i]
		s.msgs[i].Hdr.SetIovlen(1)
		s.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		s.msgs[i].Hdr.Control = &s.ctrl[i][0]
	}
	return s
}

func (s *sock) family() string {
	if s.v6 {
		return "IPv6"
	}
	return "IPv4"
}

// receiveIPv4 and receiveIPv6 are the ReceiveFuncs; the names are how
// conn.ReceiveFunc.PrettyName tells them apart.
func (s *sock) receiveIPv4(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return s.receive(bufs, sizes, eps)
}

func (s *sock) receiveIPv6(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return s.receive(bufs, sizes, eps)
}

// receive hands out datagrams left from the last recvmmsg, or else reads
// more, blocking in poll while the socket is empty.
func (s *sock) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	s.c.inFd.RLock()
	defer s.c.inFd.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.c.closing.Load() {
			return 0, net.ErrClosed
		}
		if s.next < s.got {
			if n := s.drain(bufs, sizes, eps); n > 0 {
				return n, nil
			}
			continue // everything was dropped; read on
		}
		n, errno := s.recvmmsg(min(recvMsgs, len(bufs)))
		switch errno {
		case 0:
			s.got, s.next, s.off, s.ep = n, 0, 0, nil
		case unix.EINTR:
		case unix.EAGAIN:
			if err := s.c.wait(s.fd, unix.POLLIN, &s.pfd, &s.spin); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("udpbind: recvmmsg on %s socket: %w", s.family(), errno)
		}
	}
}

func (s *sock) recvmmsg(n int) (int, unix.Errno) {
	for i := range n {
		h := &s.msgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(recvCmsgSpace)
		h.Flags = 0
		s.iovs[i].SetLen(recvBufSize)
		s.msgs[i].Len = 0
	}
	return nbsys.Recvmmsg(s.fd, s.msgs[:n], 0)
}

// drain splits the pending messages into bufs and returns how many it filled.
func (s *sock) drain(bufs [][]byte, sizes []int, eps []conn.Endpoint) int {
	filled := 0
	for s.next < s.got && filled < len(bufs) {
		m := &s.msgs[s.next]
		if s.ep == nil {
			if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
				s.b.dropped.Add(1)
				s.next, s.off = s.next+1, 0
				continue
			}
			info := parseCmsg(s.ctrl[s.next][:min(int(m.Hdr.Controllen), recvCmsgSpace)])
			s.gso = info.gsoSize
			s.ep = s.endpoint(s.next, info)
			if datagramsIn(int(m.Len), s.gso) > 1 {
				s.b.groMessages.Add(1)
			}
		}
		msg := s.bufs[s.next][:m.Len]
		if len(msg) == 0 {
			// An empty datagram is handed out too (size 0), so the
			// caller drops and counts it with the other malformed
			// ones instead of it vanishing here uncounted.
			sizes[filled], eps[filled] = 0, s.ep
			filled++
			s.next, s.off, s.ep = s.next+1, 0, nil
			continue
		}
		f, off, dropped := splitGRO(msg, s.gso, s.off, bufs[filled:], sizes[filled:])
		for i := filled; i < filled+f; i++ {
			eps[i] = s.ep
		}
		filled += f
		if dropped > 0 {
			s.b.dropped.Add(uint64(dropped))
		}
		if off < len(msg) {
			s.off = off // bufs are full; the rest waits for the next call
			break
		}
		s.next, s.off, s.ep = s.next+1, 0, nil
	}
	return filled
}

// endpoint returns the Endpoint for message i: from the cache when this
// flow was seen before, else a new one (which is never changed afterwards
// but for ClearSrc; a cleared one is replaced so the source is learnt anew).
func (s *sock) endpoint(i int, info recvInfo) *Endpoint {
	var k epKey
	sa := &s.names[i]
	port := func(p uint16) uint16 { b := (*[2]byte)(unsafe.Pointer(&p)); return uint16(b[0])<<8 | uint16(b[1]) }
	if s.v6 {
		k.dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port(sa.Port))
		if k.dst.Addr().IsLinkLocalUnicast() {
			k.scope = sa.Scope_id
		}
	} else {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		k.dst = netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port(sa4.Port))
	}
	if info.dst.IsValid() && !info.dst.IsUnspecified() {
		k.src, k.ifindex = info.dst, info.ifindex
	}
	if s.last != nil && s.lastKey == k && !s.last.noSrc.Load() {
		return s.last
	}
	e := s.cache[k]
	if e == nil || e.noSrc.Load() {
		if len(s.cache) >= maxCachedEndpoints {
			clear(s.cache)
		}
		e = &Endpoint{dst: k.dst, scope: k.scope, src: k.src, ifindex: k.ifindex}
		s.cache[k] = e
	}
	s.last, s.lastKey = e, k
	return e
}
