package tunnel

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// Every data packet received calls roam; when the peer has not moved, it
// must not allocate (it did: the endpoint went to the heap on every call).
func TestRoamToTheSameEndpointAllocatesNothing(t *testing.T) {
	var ep conn.Endpoint = &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("198.18.0.2:51820")}
	p := &Peer{d: &Device{}} // a device for its endpoint index (storeEndpoint)
	p.roam(ep)               // first packet: stores it
	if got := p.currentEndpoint(); got != ep {
		t.Fatalf("endpoint after the first packet: %v, want %v", got, ep)
	}
	if n := testing.AllocsPerRun(1000, func() { p.roam(ep) }); n != 0 {
		t.Fatalf("%v allocations per packet from the same endpoint", n)
	}
}
