package tunnel

import (
	"math"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
)

// A rekey that resumes while the responder is under load: b answers a's
// message 5 with a cookie reply, before it opens anything, so the ticket is
// not spent; a's retry with the cookie resumes with that ticket again.
// It used to fall back to a full handshake, which costs the loaded
// responder several times what a resumption does.
func TestResumptionAnsweredWithCookieResumesAgain(t *testing.T) {
	var p *pair
	p = newPairOpts(t, nil, 0, nil, withTickets(&p))
	var full, resumptions, cookies atomic.Int32 // what a sent, and b's cookie replies
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		switch {
		case len(b) == 0:
		case b[0] == handshake.MessageTypeInitiation:
			full.Add(1)
		case b[0] == handshake.MessageTypeResumptionInitiation:
			resumptions.Add(1)
		case b[0] == handshake.MessageTypeCookieReply:
			cookies.Add(1)
		}
		return true
	}
	p.net.mu.Unlock()
	p.exchange(t, 0)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })

	p.clock.Advance(121 * time.Second) // past rekey_after
	// b is under load from now on (the fake clock stands still): it
	// demands a cookie from every handshake message without one.
	p.b.dev.load.UnderLoad(math.MaxInt)
	p.exchange(t, 1) // a sends under the old key and starts the rekey
	waitFor(t, 5*time.Second, "the rekey", func() bool {
		return p.a.peerStatus(t).Handshakes == 2 && p.b.peerStatus(t).Handshakes == 2
	})
	p.exchange(t, 2)
	sa, sb := p.a.peerStatus(t), p.b.peerStatus(t)
	if cookies.Load() != 1 || sa.CookieReplies != 1 {
		t.Fatalf("b sent %d cookie replies, a took %d; want 1", cookies.Load(), sa.CookieReplies)
	}
	if sa.HandshakesResumed != 1 || sb.HandshakesResumed != 1 {
		t.Fatalf("resumed handshakes a=%d b=%d, want 1: the retry after the cookie fell back to a full handshake (a sent %d full, %d resumption messages)",
			sa.HandshakesResumed, sb.HandshakesResumed, full.Load(), resumptions.Load())
	}
	if full.Load() != 1 || resumptions.Load() != 2 {
		t.Fatalf("a sent %d full and %d resumption messages, want the first handshake's one and two resumptions (before and after the cookie)",
			full.Load(), resumptions.Load())
	}
	if n := sb.ResumptionsRefused; len(n) != 0 {
		t.Fatalf("b refused resumptions: %v", n)
	}
}
