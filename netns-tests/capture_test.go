package netnstests

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"stunnel/internal/netns"
)

// capture records IPv4/UDP packets seen on one interface of a namespace
// (AF_PACKET, cooked: IP header onwards), keeping those that match.
type capture struct {
	fd     int
	done   chan struct{}
	stopFn func()

	mu   sync.Mutex // guards pkts
	pkts [][]byte
}

// startCapture records UDP packets from address src (any port) to dst
// arriving on ifname in ns. Stop it with packets; cleanup stops it too.
func startCapture(t *testing.T, ns, ifname string, src netip.Addr, dst netip.AddrPort) *capture {
	t.Helper()
	c := &capture{fd: -1, done: make(chan struct{})}
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		c.fd = fd
		// A receive timeout lets the loop notice stop without closing the
		// descriptor under a blocked read.
		tv := unix.Timeval{Usec: 100_000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s in %s: %v", ifname, ns, err)
	}
	stop := make(chan struct{})
	go c.loop(stop, src, dst)
	var once sync.Once
	c.stopFn = func() { once.Do(func() { close(stop); <-c.done; unix.Close(c.fd) }) }
	t.Cleanup(c.stop)
	return c
}

func (c *capture) loop(stop chan struct{}, src netip.Addr, dst netip.AddrPort) {
	defer close(c.done)
	buf := make([]byte, 65536)
	flags := 0
	for {
		select {
		case <-stop:
			// Drain what is already queued, then end.
			flags = unix.MSG_DONTWAIT
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, flags)
		if err != nil {
			if flags != 0 && err != unix.EINTR {
				return
			}
			continue // timeout or EINTR: check stop
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		p := buf[:n]
		if s, d, ok := udp4Ends(p); ok && s.Addr() == src && d == dst {
			// veth hands packets over with the UDP checksum left to offload
			// (only the pseudo-header sum is filled in): complete it, as a
			// real wire would have, or every replay dies in the kernel.
			q := append([]byte(nil), p...)
			setUDPChecksum(q)
			c.mu.Lock()
			c.pkts = append(c.pkts, q)
			c.mu.Unlock()
		}
	}
}

func (c *capture) stop() { c.stopFn() }

// packets stops the capture and returns what it recorded.
func (c *capture) packets() [][]byte {
	c.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pkts
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udp4Ends parses an IPv4/UDP packet's source and destination.
func udp4Ends(p []byte) (src, dst netip.AddrPort, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
		return src, dst, false
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+8 {
		return src, dst, false
	}
	sa := netip.AddrFrom4([4]byte(p[12:16]))
	da := netip.AddrFrom4([4]byte(p[16:20]))
	return netip.AddrPortFrom(sa, binary.BigEndian.Uint16(p[ihl:])),
		netip.AddrPortFrom(da, binary.BigEndian.Uint16(p[ihl+2:])), true
}

// udp4Packet builds an IPv4/UDP packet with correct checksums.
func udp4Packet(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = unix.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20], 0))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	setUDPChecksum(p)
	return p
}

// resource rewrites an IPv4/UDP packet's source address, fixing checksums:
// the same datagram, sent by someone else.
func resource(p []byte, src netip.Addr) []byte {
	q := append([]byte(nil), p...)
	s4 := src.As4()
	copy(q[12:16], s4[:])
	q[10], q[11] = 0, 0
	ihl := int(q[0]&0x0f) * 4
	binary.BigEndian.PutUint16(q[10:], checksum(q[:ihl], 0))
	setUDPChecksum(q)
	return q
}

func setUDPChecksum(p []byte) {
	ihl := int(p[0]&0x0f) * 4
	u := p[ihl:]
	u[6], u[7] = 0, 0
	var pseudo [12]byte
	copy(pseudo[0:8], p[12:20])
	pseudo[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(u)))
	sum := checksum(u, sum16(pseudo[:], 0))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], sum)
}

func sum16(b []byte, s uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func checksum(b []byte, initial uint32) uint16 {
	s := sum16(b, initial)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// sendRawIPv4 sends complete IPv4 packets, headers as given (IP_HDRINCL),
// from namespace ns: this is how tests forge source addresses.
func sendRawIPv4(t *testing.T, ns string, pkts [][]byte) {
	t.Helper()
	err := netns.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			to := &unix.SockaddrInet4{Addr: [4]byte(p[16:20])}
			if err := unix.Sendto(fd, p, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("raw send from %s: %v", ns, err)
	}
}
