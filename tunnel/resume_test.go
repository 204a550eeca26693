package tunnel

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/tickets"
)

// withTickets gives both hosts a ticket ring on the pair's fake clock.
func withTickets(p **pair) func(h *host, o *Options) {
	return func(h *host, o *Options) {
		o.Tickets = tickets.NewRing(tickets.Options{Now: o.Now})
	}
}

// Timed rekeys resume with the ticket the responder issued after the
// previous handshake: counted as resumed on both sides, a new session each
// time, traffic never waits. A full handshake comes back once the peer's
// ticket is refused (here: the responder forgot the ticket key).
func TestRekeysResumeWithTickets(t *testing.T) {
	var p *pair
	p = newPairOpts(t, nil, 0, nil, withTickets(&p))
	ping := func(i int) {
		t.Helper()
		out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{byte(i)})
		p.a.tun.toTunnel <- out
		p.b.expect(t, out)
		back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte{byte(i)})
		p.b.tun.toTunnel <- back
		p.a.expect(t, back)
	}
	var captured atomic.Pointer[[]byte] // a's first resumption message, replayed later
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if len(b) > 0 && b[0] == handshake.MessageTypeResumptionInitiation {
			c := append([]byte(nil), b...)
			captured.CompareAndSwap(nil, &c)
		}
		return true
	}
	p.net.mu.Unlock()
	ping(0)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })
	if s := p.a.peerStatus(t); s.HandshakesResumed != 0 || s.Handshakes != 1 {
		t.Fatalf("after the first handshake: %+v", s)
	}
	sessions := map[string]bool{p.a.peerStatus(t).SessionID: true}
	for round := 1; round <= 3; round++ {
		p.clock.Advance(121 * time.Second)
		ping(round)
		waitFor(t, 5*time.Second, "the resumed rekey", func() bool {
			return p.a.peerStatus(t).HandshakesResumed == uint64(round) && p.b.peerStatus(t).HandshakesResumed == uint64(round)
		})
		ping(round + 100)
		waitFor(t, 5*time.Second, "the next ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })
		sa, sb := p.a.peerStatus(t), p.b.peerStatus(t)
		if sa.SessionID != sb.SessionID || sessions[sa.SessionID] {
			t.Fatalf("round %d: session a=%s b=%s, want a new shared one", round, sa.SessionID, sb.SessionID)
		}
		sessions[sa.SessionID] = true
		for _, s := range []PeerStatus{sa, sb} {
			if s.Drops[DropNoKey] != 0 || s.Drops[DropAuthFailed] != 0 || s.Drops[DropReplayed] != 0 {
				t.Fatalf("round %d: drops %v", round, s.Drops)
			}
		}
	}
	// A replayed resumption is refused and charged to the peer its ticket names.
	p.net.inject(netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under), *captured.Load())
	waitFor(t, 5*time.Second, "b to refuse the replayed resumption", func() bool {
		return p.b.peerStatus(t).ResumptionsRefused["replayed"] == 1
	})
	ping(40)

	// b loses every ticket key: a's ticket is refused, a falls back to a
	// full handshake at its next retry.
	for _, k := range p.b.dev.Status().TicketKeys {
		if err := p.b.dev.ticketRing.Retire(k.Name); err != nil {
			t.Fatal(err)
		}
	}
	full := p.a.peerStatus(t).Handshakes - p.a.peerStatus(t).HandshakesResumed
	p.clock.Advance(121 * time.Second)
	ping(50)
	waitFor(t, 5*time.Second, "b to refuse the ticket", func() bool {
		return p.b.dev.Status().ResumptionsRefused["ticket key unknown"] == 1
	})
	p.clock.Advance(6 * time.Second) // one retry interval
	p.a.dev.tick()
	waitFor(t, 5*time.Second, "the fallback full handshake", func() bool {
		s := p.a.peerStatus(t)
		return s.Handshakes-s.HandshakesResumed == full+1
	})
	ping(51)
}

// countResumptions counts the resumption initiations p's network carries,
// either way, from now on.
func countResumptions(p *pair) *atomic.Int32 {
	var n atomic.Int32
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if len(b) > 0 && b[0] == handshake.MessageTypeResumptionInitiation {
			n.Add(1)
		}
		return true
	}
	p.net.mu.Unlock()
	return &n
}

// A reload that shortens [tickets] reauth_after reaches this side's own
// check (session core), not only the ring: a ticket whose last full
// handshake is older than the new limit is no longer offered, the rekey is
// a full handshake. Before the fix the start-up value (24h) stayed in the
// session core and a resumed anyway.
func TestReloadShorterReauthAfterStopsOfferingTheTicket(t *testing.T) {
	var p *pair
	p = newPairOpts(t, nil, 0, nil, withTickets(&p))
	resumptions := countResumptions(p) // resumption messages a sent
	p.exchange(t, 0)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })

	cfg := *p.a.cfg
	cfg.Tickets.Enabled, cfg.Tickets.ReauthAfter = true, time.Minute
	if err := p.a.dev.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	p.clock.Advance(121 * time.Second) // past rekey_after, and the new reauth_after since the full handshake
	p.exchange(t, 1)
	waitFor(t, 5*time.Second, "the rekey", func() bool {
		return p.a.peerStatus(t).Handshakes == 2 && p.b.peerStatus(t).Handshakes == 2
	})
	if s := p.a.peerStatus(t); s.HandshakesResumed != 0 || resumptions.Load() != 0 {
		t.Fatalf("a offered a ticket older than the reloaded reauth_after: %d resumed, %d resumption messages", s.HandshakesResumed, resumptions.Load())
	}
}

// A reload with [tickets] enabled = false makes every handshake a full one
// at once, as a start with it does: the responder neither accepts nor
// issues tickets and the initiator offers none it holds. The reload used to
// be accepted and resumption went on until a restart.
func TestReloadTicketsDisabledStopsResumption(t *testing.T) {
	var p *pair
	p = newPairOpts(t, nil, 0, nil, withTickets(&p))
	resumptions := countResumptions(p) // resumption messages sent either way
	p.exchange(t, 0)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })

	for _, h := range []*host{p.a, p.b} {
		cfg := *h.cfg
		cfg.Tickets.Enabled, cfg.Tickets.ReauthAfter = false, 24*time.Hour
		if err := h.dev.Reload(&cfg); err != nil {
			t.Fatal(err)
		}
	}
	for round := byte(1); round <= 2; round++ {
		p.clock.Advance(121 * time.Second) // past rekey_after
		p.exchange(t, round)
		waitFor(t, 5*time.Second, "the rekey", func() bool {
			return p.a.peerStatus(t).Handshakes == uint64(round)+1 && p.b.peerStatus(t).Handshakes == uint64(round)+1
		})
		p.exchange(t, round+100)
	}
	if s := p.a.peerStatus(t); s.HandshakesResumed != 0 || resumptions.Load() != 0 || s.Ticket != nil {
		t.Fatalf("tickets still used after a reload with enabled = false: %d resumed, %d resumption messages, ticket held %v",
			s.HandshakesResumed, resumptions.Load(), s.Ticket != nil)
	}

	// Switched back on: the start's ring issues again.
	for _, h := range []*host{p.a, p.b} {
		cfg := *h.cfg
		cfg.Tickets.Enabled, cfg.Tickets.ReauthAfter = true, 24*time.Hour
		if err := h.dev.Reload(&cfg); err != nil {
			t.Fatal(err)
		}
	}
	p.clock.Advance(121 * time.Second)
	p.exchange(t, 3)
	waitFor(t, 5*time.Second, "a ticket after tickets were switched back on", func() bool { return p.a.peerStatus(t).Ticket != nil })
}

// TestResumptionRefusalReasons: each refusal of a resumption is counted
// under its own reason and drop, not lumped in with malformed ones: a
// rate-limited resumption (the responder's one-per-interval rule, which
// resumptions share with initiations) counts as rate_limited, as an
// initiation does, and is not charged to the peer its ticket names.
func TestResumptionRefusalReasons(t *testing.T) {
	p := newPair(t, nil)
	d := p.b.dev
	limited := &handshake.PeerError{PeerID: "a", Err: fmt.Errorf("%w: 1ms since the last one", handshake.ErrRateLimited)}
	d.resumptionFailed(limited, "198.18.0.1:51820", netip.MustParseAddr("198.18.0.1"))
	d.resumptionFailed(fmt.Errorf("%w: bad tag", handshake.ErrDecrypt), "198.18.0.1:51820", netip.MustParseAddr("198.18.0.1"))
	d.resumptionFailed(fmt.Errorf("%w: short", handshake.ErrMalformed), "198.18.0.1:51820", netip.MustParseAddr("198.18.0.1"))
	st := d.Status()
	for reason, want := range map[string]uint64{"rate limited": 1, "does not authenticate": 1, "malformed": 1} {
		if got := st.ResumptionsRefused[reason]; got != want {
			t.Errorf("refused %q: %d, want %d (all: %v)", reason, got, want, st.ResumptionsRefused)
		}
	}
	if st.Drops[DropRateLimited] != 1 || st.Drops[DropHandshakeFailed] != 2 {
		t.Errorf("drops %v, want rate_limited 1 and handshake_failed 2", st.Drops)
	}
	if n := p.b.peerStatus(t).ResumptionsRefused["rate limited"]; n != 0 {
		t.Errorf("a rate-limited resumption charged to the peer: %d", n)
	}
}

// TestStaleTicketIsNotMalformed: a new-ticket message, authenticated, for a
// session this side is not waiting on a ticket for (two handshakes crossed
// and the other one won) is let go, not counted as a malformed packet; a
// control message that does not parse still is.
func TestStaleTicketIsNotMalformed(t *testing.T) {
	p := newPair(t, nil)
	beta := p.a.dev.peers.Load().byID["beta"]
	msg, err := handshake.MarshalTicketMessage(make([]byte, 100), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	beta.controlReceived(msg, new(rekey.Keypair))
	if n := p.a.peerStatus(t).Drops[DropMalformed]; n != 0 {
		t.Errorf("a stale ticket counted as malformed (%d)", n)
	}
	beta.controlReceived(msg[:3], new(rekey.Keypair))
	if n := p.a.peerStatus(t).Drops[DropMalformed]; n != 1 {
		t.Errorf("a cut control message: malformed %d, want 1", n)
	}
}
