package tunnel

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"stunnel/handshake"
)

// The refusals a datagram alone causes (an initiation that does not
// decrypt, a replayed one, a resumption refused for any reason) are logged
// per source, as every warning from the network is (rateLimitedLog): a
// stranger who knows our public key sends one such message per interval
// and must not thereby silence the same line for the peer it concerns.
func TestNetworkRefusalsLoggedPerSource(t *testing.T) {
	h := &msgCounter{}
	p := newPairOpts(t, nil, 0, nil, func(host *host, o *Options) {
		if host.cfg.Interface.PeerID == "beta" {
			o.Logger = slog.New(h)
		}
	})
	d := p.b.dev
	cases := []struct {
		msg, reason string
		refuse      func(err error, from string, src netip.Addr)
		err         error
	}{
		{"handshake initiation failed", "hs-fail", d.initiationFailed, fmt.Errorf("%w: junk", handshake.ErrDecrypt)},
		{"dropped replayed or stale handshake initiation", "hs-replay", d.initiationFailed, handshake.ErrReplay},
		{"refused session resumption; the peer falls back to a full handshake", "resume-ticket key unknown",
			d.resumptionFailed, fmt.Errorf("%w (0a0b0c0d)", handshake.ErrTicketKeyUnknown)},
	}
	for _, c := range cases {
		p.clock.Advance(11 * time.Second) // every bucket's interval over
		// Two sources in buckets of their own (the hash is keyed at random).
		stranger, peer := netip.MustParseAddr("198.18.0.66"), netip.MustParseAddr("198.18.0.1")
		for d.warn.sourceHash(stranger, c.reason)%warnBuckets == d.warn.sourceHash(peer, c.reason)%warnBuckets {
			stranger = stranger.Next()
		}
		c.refuse(c.err, netip.AddrPortFrom(stranger, 4000).String(), stranger)
		c.refuse(c.err, netip.AddrPortFrom(peer, 51820).String(), peer)
		if n := h.count(c.msg); n != 2 {
			t.Errorf("%q from a stranger, then from the peer: %d lines, want one for each source", c.msg, n)
		}
	}
}
