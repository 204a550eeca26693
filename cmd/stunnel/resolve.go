package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
)

// endpointResolver looks up DNS endpoints with the firewall mark of the
// tunnel's UDP socket once a full tunnel sets one: the queries then bypass
// the tunnel's routing table as the encrypted packets do. Unmarked, a lookup
// of the endpoint that the tunnel needs in order to come up would be routed
// into that very tunnel and never answered. (A local stub resolver such as
// systemd-resolved forwards unmarked; see README.md, "Full tunnel".)
type endpointResolver struct {
	mark atomic.Uint32 // 0: none; set by setFullTunnel
}

// resolve is tunnel.Options.Resolve: host:port to an address, IPv4
// preferred as tunnel's own resolver does.
func (r *endpointResolver) resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", portText, err)
	}
	res := net.DefaultResolver
	if mark := r.mark.Load(); mark != 0 {
		d := markedDialer(mark)
		res = &net.Resolver{PreferGo: true, Dial: d.DialContext}
	}
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s has no address", host)
	}
	best := addrs[0].Unmap()
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a.Unmap()
			break
		}
	}
	return netip.AddrPortFrom(best, uint16(port)), nil
}

// markedDialer dials sockets that carry mark (SO_MARK, CAP_NET_ADMIN).
func markedDialer(mark uint32) *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		return serr
	}}
}
