package udpbind

import (
	"net/netip"
	"testing"
)

// A bind on all addresses answers from the address it was reached at.
func TestStickySource(t *testing.T) {
	a, b := openBind(t), openBind(t)
	if err := a.Send([][]byte{[]byte("ping")}, b.ep(t, "127.0.0.2")); err != nil {
		t.Fatal(err)
	}
	in := collect(t, b, b.fns[0], 1, 4, 2048)[0]
	if in.ep.SrcIP() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("ping came to %v, want 127.0.0.2", in.ep.SrcIP())
	}
	if err := b.Send([][]byte{[]byte("pong")}, in.ep); err != nil {
		t.Fatal(err)
	}
	out := collect(t, a, a.fns[0], 1, 4, 2048)[0]
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), b.port); out.ep.AddrPort() != want {
		t.Fatalf("reply from %v, want %v", out.ep.AddrPort(), want)
	}
	// Without the sticky source the kernel picks 127.0.0.1: the check
	// above did test something.
	in.ep.ClearSrc()
	if err := b.Send([][]byte{[]byte("pong")}, in.ep); err != nil {
		t.Fatal(err)
	}
	out = collect(t, a, a.fns[0], 1, 4, 2048)[0]
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.port); out.ep.AddrPort() != want {
		t.Fatalf("reply after ClearSrc from %v, want %v", out.ep.AddrPort(), want)
	}
}

// A sticky source the host does not have is dropped and the send goes out
// from the kernel's choice.
func TestStickySourceGone(t *testing.T) {
	a, b := openBind(t), openBind(t)
	ep := &Endpoint{
		dst: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.port),
		src: netip.MustParseAddr("198.18.0.99"),
	}
	if err := a.Send([][]byte{[]byte("x"), []byte("y")}, ep); err != nil {
		t.Fatalf("Send with a foreign sticky source: %v", err)
	}
	if ep.SrcIP().IsValid() {
		t.Fatalf("source %v kept after the kernel refused it", ep.SrcIP())
	}
	out := collect(t, b, b.fns[0], 2, 4, 2048)
	if string(out[0].data)+string(out[1].data) != "xy" || out[0].ep.AddrPort().Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("got %q from %v", string(out[0].data)+string(out[1].data), out[0].ep.AddrPort())
	}
}
