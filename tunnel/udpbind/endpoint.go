package udpbind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// Endpoint is a remote UDP address plus the local address the peer talked
// to (the sticky source replies leave from). It implements conn.Endpoint.
//
// An Endpoint is never changed after it is handed out, except that
// ClearSrc (from the caller, or from Send when the kernel refuses the
// source) turns the source off for good; that flag is atomic, so an
// Endpoint may be shared by any goroutines.
type Endpoint struct {
	dst     netip.AddrPort // remote address, IPv4 unmapped
	scope   uint32         // IPv6 scope (interface index) of a link-local dst
	src     netip.Addr     // local address; invalid: the kernel picks
	ifindex int32          // interface src belongs to
	noSrc   atomic.Bool    // set by ClearSrc
}

// AddrPort is the remote address.
func (e *Endpoint) AddrPort() netip.AddrPort { return e.dst }

// ClearSrc makes later sends to e leave from whatever address the kernel picks.
func (e *Endpoint) ClearSrc() { e.noSrc.Store(true) }

// SrcIP is the sticky local address, or the zero Addr when there is none.
func (e *Endpoint) SrcIP() netip.Addr {
	if e.noSrc.Load() {
		return netip.Addr{}
	}
	return e.src
}

// DstIP is the remote IP address.
func (e *Endpoint) DstIP() netip.Addr { return e.dst.Addr() }

// DstToString is the remote address as ip:port.
func (e *Endpoint) DstToString() string { return e.dst.String() }

// SrcToString is the sticky local address, or "" when there is none.
func (e *Endpoint) SrcToString() string {
	if s := e.SrcIP(); s.IsValid() {
		return s.String()
	}
	return ""
}

// DstToBytes is the remote address in the form mac2 cookies are computed
// over (netip.AddrPort's binary encoding, as wireguard-go's endpoints).
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.dst.MarshalBinary()
	return b
}

// src reports the sticky source and its interface, if any.
func (e *Endpoint) source() (netip.Addr, int32) {
	if e.noSrc.Load() {
		return netip.Addr{}, 0
	}
	return e.src, e.ifindex
}

var errZone = errors.New("unknown IPv6 zone")

// parseEndpoint reads "ip:port" or "[ipv6%zone]:port" with a literal
// address. An IPv4-mapped IPv6 address becomes the IPv4 address (it is sent
// over the IPv4 socket, and that is how replies from it are reported).
func parseEndpoint(s string) (*Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("udpbind: endpoint %q: %w", s, err)
	}
	if ap.Port() == 0 {
		return nil, fmt.Errorf("udpbind: endpoint %q: port 0", s)
	}
	a := ap.Addr()
	e := &Endpoint{}
	if z := a.Zone(); z != "" {
		if n, err := strconv.ParseUint(z, 10, 32); err == nil {
			e.scope = uint32(n)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			e.scope = uint32(ifi.Index)
		} else {
			return nil, fmt.Errorf("udpbind: endpoint %q: %w %q", s, errZone, z)
		}
		a = a.WithZone("")
	}
	e.dst = netip.AddrPortFrom(a.Unmap(), ap.Port())
	return e, nil
}

var _ conn.Endpoint = (*Endpoint)(nil)
