package tunnel

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"stunnel/handshake"
)

// PRODUCT.md: malformed packets and bad MACs are dropped, counted by reason
// and logged rate-limited. Each kind here was counted but never logged: a
// datagram of no message type, an empty one, a stray cookie reply, a data
// packet under a live index that fails authentication, and an
// authenticated packet that is no IP packet.
func TestMalformedAndForgedPacketsAreLogged(t *testing.T) {
	p := newPair(t, nil)
	h := &msgCounter{}
	warn := newRateLimitedLog(slog.New(h), p.clock.Now)
	warn.interval = 0 // every line: two sources may share a bucket
	p.b.dev.warn = warn
	var data []byte
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if b[0] == handshake.MessageTypeData && len(b) > headerLen+tagLen && data == nil {
			data = append([]byte(nil), b...)
		}
		return true
	}
	ping := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("ping"))
	p.a.tun.toTunnel <- ping
	p.b.expect(t, ping)
	p.net.filter = nil

	to := netip.MustParseAddrPort(p.b.under)
	forged := append([]byte(nil), data...)
	forged[len(forged)-1] ^= 1
	junk := make([]byte, 64)
	junk[0] = 255
	cookie := make([]byte, handshake.CookieReplySize)
	cookie[0], cookie[1] = handshake.MessageTypeCookieReply, handshake.ProtocolVersion
	p.net.inject(netip.MustParseAddrPort("198.18.0.66:9999"), to, junk)
	p.net.inject(netip.MustParseAddrPort("198.18.0.67:9999"), to, nil)
	p.net.inject(netip.MustParseAddrPort("198.18.0.68:9999"), to, cookie)
	p.net.inject(netip.MustParseAddrPort("198.18.0.69:9999"), to, forged)

	// An authenticated packet that is no IP packet (version 0).
	now := p.clock.Now()
	kp := p.a.dev.peers.Load().byID["beta"].sess.Current(now)
	ctr, _ := kp.NextNonce(now)
	var nonce [12]byte
	msg := make([]byte, headerLen, headerLen+20+tagLen)
	writeDataHeader(msg, kp.RemoteIndex, ctr)
	putNonce(&nonce, ctr)
	msg = kp.Send.Seal(msg, nonce[:], make([]byte, 20), nil)
	p.net.inject(netip.MustParseAddrPort(p.a.under), to, msg)

	waitFor(t, 5*time.Second, "the drops to be counted", func() bool {
		s := p.b.dev.Status()
		return s.Drops[DropMalformed] == 3 && s.Peers[0].Drops[DropAuthFailed] == 1 && s.Peers[0].Drops[DropMalformed] == 1
	})
	for _, want := range []string{"malformed datagram", "empty datagram", "cookie reply", "failed authentication", "no IPv4 or IPv6 packet"} {
		if !h.has(want) {
			t.Errorf("no log line saying %q; logged: %q", want, h.all())
		}
	}
}
