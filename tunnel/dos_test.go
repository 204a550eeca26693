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
	waitFor(t, 5*time.Second, "b's cookie reply", func() bool { return cookieReplies.Load() == 1 })
	if s := p.b.peerStatus(t); s.Handshakes != 0 {
		t.Fatal("b answered an initiation without mac2 while under load")
	}
	// The reply was counted when b sent it; a must have taken it before it
	// retries, or the retry goes out without mac2 again.
	waitFor(t, 5*time.Second, "a to take the cookie", func() bool { return p.a.peerStatus(t).CookieReplies == 1 })
	// a retries after RekeyTimeout, now with mac2 from the cookie.
	p.clock.Advance(6 * time.Second)
	p.a.dev.tick()
	p.b.expect(t, out)
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
