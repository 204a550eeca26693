package main

import (
	"context"
	"net"
	"syscall"
	"testing"

	"stunnel/internal/roottest"
)

func TestEndpointResolverLiteral(t *testing.T) {
	var r endpointResolver
	r.mark.Store(51820)
	ap, err := r.resolve(context.Background(), "198.18.0.2:51820")
	if err != nil || ap.String() != "198.18.0.2:51820" {
		t.Fatalf("resolve literal = %v, %v", ap, err)
	}
	if _, err := r.resolve(context.Background(), "no-port"); err == nil {
		t.Fatal("resolve without a port succeeded")
	}
}

// The DNS queries of a full tunnel carry the socket mark, so they bypass
// the tunnel's routing table.
func TestMarkedDialerSetsMark(t *testing.T) {
	roottest.Require(t, "SO_MARK needs CAP_NET_ADMIN")
	c, err := markedDialer(51820).DialContext(context.Background(), "udp", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var gerr error
	raw.Control(func(fd uintptr) { mark, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK) })
	if gerr != nil || mark != 51820 {
		t.Fatalf("SO_MARK = %d, %v; want 51820", mark, gerr)
	}
}
