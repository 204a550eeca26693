package udpbind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"stunnel/internal/nbsys"
)

var errNoIPv6 = errors.New("udpbind: no IPv6 socket (the host has no IPv6)")

// sendScratch is the memory of one Send, pooled in Bind.scratch and used by
// one goroutine at a time. msgs point into it and at the caller's buffers
// (the kernel gathers each GSO group from its iovecs: nothing is copied).
type sendScratch struct {
	msgs  [BatchSize]unix.Mmsghdr
	iovs  [BatchSize]unix.Iovec
	ctrl  [BatchSize][sendCmsgSpace]byte
	first [BatchSize]int  // index in the chunk of each message's first datagram
	gso   [BatchSize]bool // the message carries UDP_SEGMENT
	name  unix.RawSockaddrInet6
	pfd   [2]unix.PollFd
}

// Send writes bufs to ep, grouping runs of equal-size datagrams into GSO
// messages, all in one sendmmsg where it can. It may be called from any
// number of goroutines at once: each uses its own pooled scratch and holds
// the Open's inFd read lock, and the sockets are safe for concurrent sends.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	c := b.cur.Load()
	if c == nil {
		return net.ErrClosed
	}
	c.inFd.RLock()
	defer c.inFd.RUnlock()
	if c.closing.Load() {
		return net.ErrClosed
	}
	s := c.v4
	if e.dst.Addr().Is6() && !e.dst.Addr().Is4In6() {
		if s = c.v6; s == nil {
			return errNoIPv6
		}
	}
	sc := b.scratch.Get().(*sendScratch)
	defer b.scratch.Put(sc)
	sc.setName(e)
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), BatchSize)]
		if err := b.sendChunk(c, s, sc, chunk, e); err != nil {
			return err
		}
		bufs = bufs[len(chunk):]
	}
	return nil
}

func (sc *sendScratch) setName(e *Endpoint) {
	a := e.dst.Addr().Unmap()
	p := e.dst.Port()
	if a.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sc.name))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
		pb[0], pb[1] = byte(p>>8), byte(p)
		return
	}
	sc.name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: e.scope}
	pb := (*[2]byte)(unsafe.Pointer(&sc.name.Port))
	pb[0], pb[1] = byte(p>>8), byte(p)
}

// build fills msgs[at:] for chunk[from:] and returns the index after the
// last message.
func (sc *sendScratch) build(chunk [][]byte, from, at int, gso bool, src netip.Addr, ifindex int32, v6 bool) int {
	nameLen := uint32(unix.SizeofSockaddrInet4)
	if v6 {
		nameLen = unix.SizeofSockaddrInet6
	}
	for i := from; i < len(chunk); at++ {
		end := i + 1
		if gso {
			end = gsoGroupEnd(chunk, i)
		}
		for j := i; j < end; j++ {
			iov := &sc.iovs[j]
			iov.Base = nil
			if len(chunk[j]) > 0 {
				iov.Base = &chunk[j][0]
			}
			iov.SetLen(len(chunk[j]))
		}
		h := &sc.msgs[at].Hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&sc.name)), Namelen: nameLen, Iov: &sc.iovs[i]}
		h.SetIovlen(end - i)
		ctrl := sc.ctrl[at][:]
		n := 0
		sc.gso[at] = end-i > 1
		if sc.gso[at] {
			n += putSegment(ctrl, uint16(len(chunk[i])))
		}
		n += putPktinfo(ctrl[n:], src, ifindex)
		if n > 0 {
			h.Control = &ctrl[0]
			h.SetControllen(n)
		}
		sc.first[at] = i
		i = end
	}
	return at
}

// sendmmsg is the system call; Bind.sendmmsg is it but for tests that
// need an error the kernel on hand will not produce.
func sendmmsg(fd int, msgs []unix.Mmsghdr) (int, unix.Errno) {
	return nbsys.Sendmmsg(fd, msgs, 0)
}

func (b *Bind) sendChunk(c *conns, s *sock, sc *sendScratch, chunk [][]byte, e *Endpoint) error {
	src, ifindex := e.source()
	gso := !b.noGSO.Load()
	var firstErr error
	n := sc.build(chunk, 0, 0, gso, src, ifindex, s.v6)
	for sent := 0; sent < n; {
		r, errno := b.sendmmsg(s.fd, sc.msgs[sent:n])
		switch {
		case errno == 0:
			for i := sent; i < sent+r; i++ {
				if sc.gso[i] {
					b.gsoSends.Add(1)
				}
			}
			sent += r
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			if err := c.wait(s.fd, unix.POLLOUT, &sc.pfd, nil); err != nil {
				return err
			}
		case errno == unix.EIO && sc.gso[sent]:
			// The route's device cannot checksum for GSO: send every
			// datagram on its own from now on.
			b.noGSO.Store(true)
			gso = false
			n = sc.build(chunk, sc.first[sent], sent, false, src, ifindex, s.v6)
		case (errno == unix.EMSGSIZE || errno == unix.EINVAL) && sc.gso[sent]:
			// A segment bigger than the path MTU is refused for GSO where
			// a lone datagram would be fragmented: send this chunk's rest
			// one by one (later chunks try GSO again).
			gso = false
			n = sc.build(chunk, sc.first[sent], sent, false, src, ifindex, s.v6)
		case src.IsValid():
			// The sticky source is gone or no longer routable (EINVAL,
			// EADDRNOTAVAIL, ENETUNREACH, ...): let the kernel pick, for
			// this and later sends to e. A second failure is returned.
			e.ClearSrc()
			src, ifindex = netip.Addr{}, 0
			n = sc.build(chunk, sc.first[sent], sent, gso, src, ifindex, s.v6)
		default:
			// Drop this message, not the rest of the batch: a datagram the
			// kernel refuses says nothing about its neighbours.
			if firstErr == nil {
				firstErr = fmt.Errorf("udpbind: sendmmsg to %s: %w", e.dst, errno)
			}
			b.sendDropped.Add(uint64(sc.count(sent, n, len(chunk))))
			sent++
		}
	}
	return firstErr
}

// count is how many datagrams message i of msgs[:n] carries.
func (sc *sendScratch) count(i, n, chunkLen int) int {
	if i+1 < n {
		return sc.first[i+1] - sc.first[i]
	}
	return chunkLen - sc.first[i]
}
