package main

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"stunnel/tunnel"
)

// endpointResolver looks up DNS endpoints with the firewall mark of the
// tunnel's UDP socket once a full tunnel sets one: the queries then bypass
// the tunnel's routing table as the encrypted packets do. Unmarked, a lookup
// of the endpoint that the tunnel needs in order to come up would be routed
// into that very tunnel and never answered. (A local stub resolver such as
// systemd-resolved forwards unmarked; see README.md, "Full tunnel".)
type endpointResolver struct {
	mark atomic.Uint32 // 0: none; set by addFullTunnel
}

// resolve is tunnel.Options.Resolve: host:port to an address, IPv4
// preferred as tunnel's own resolver does.
func (r *endpointResolver) resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	res := net.DefaultResolver
	if mark := r.mark.Load(); mark != 0 {
		d := markedDialer(mark)
		res = &net.Resolver{PreferGo: true, Dial: d.DialContext}
	}
	return tunnel.ResolveWith(ctx, res, hostport)
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
