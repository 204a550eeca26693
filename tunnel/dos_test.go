package tunnel

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
)

func TestHandshakeUnderLoadGoesThroughCookie(t *testing.T) {
	p := newPair(t, nil)
	p.b.dev.load = handshake.NewLoadMonitor(0, p.clock.Now) // b is always under load
	var cookieReplies atomic.Int32
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if b[0] == handshake.MessageTypeCookieReply {
			cookieReplies.Add(1)
		}
		return true
	}
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("through the cookie"))
	p.a.tun.toTunnel <- out
	// b answers a's first initiation with a cookie, not a handshake; a takes
	// it and initiates again at once with mac2, so the packet arrives
	// without waiting a retry interval (the fake clock never moves).
	p.b.expect(t, out)
	if n := cookieReplies.Load(); n != 1 {
		t.Fatalf("%d cookie replies, want 1: b answered an initiation without mac2 while under load", n)
	}
	if s := p.a.peerStatus(t); s.CookieReplies != 1 {
		t.Fatalf("a took %d cookies, want 1", s.CookieReplies)
	}
	if s := p.b.peerStatus(t); s.Handshakes != 1 {
		t.Fatalf("b completed %d handshakes, want 1", s.Handshakes)
	}
}

func TestJunkHandshakeFloodIsDroppedCheaply(t *testing.T) {
	p := newPair(t, nil)
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("before"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	junk := make([]byte, handshake.InitiationSize)
	junk[0], junk[1] = handshake.MessageTypeInitiation, handshake.ProtocolVersion
	stranger := netip.MustParseAddrPort("198.18.0.66:9999")
	const flood = 2000
	for i := range flood {
		junk[10] = byte(i)
		p.net.inject(stranger, netip.MustParseAddrPort(p.b.under), junk)
	}
	waitFor(t, 10*time.Second, "the flood to be counted", func() bool {
		return p.b.dev.Status().Drops[DropBadMAC1] == flood
	})
	after := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("after"))
	p.a.tun.toTunnel <- after
	p.b.expect(t, after)
	if s := p.b.peerStatus(t); s.Handshakes != 1 {
		t.Fatalf("the flood caused handshakes: %d", s.Handshakes)
	}
}

// An empty datagram is a malformed packet like any other: dropped and
// counted, not lost uncounted on the way in.
func TestEmptyDatagramIsCountedMalformed(t *testing.T) {
	p := newPair(t, nil)
	stranger := netip.MustParseAddrPort("198.18.0.66:9999")
	to := netip.MustParseAddrPort(p.b.under)
	p.net.inject(stranger, to, nil)
	p.net.inject(stranger, to, []byte{0xff, 1, 0}) // three bytes: malformed too
	// The empty one is counted by the UDP reader, the short one later by
	// the handshake worker, so only both together say the empty one counted.
	waitFor(t, 5*time.Second, "both datagrams to be counted malformed (the empty one went uncounted?)", func() bool {
		return p.b.dev.Status().Drops[DropMalformed] >= 2
	})
	if n := p.b.dev.Status().Drops[DropMalformed]; n != 2 {
		t.Fatalf("malformed %d, want 2", n)
	}
}
