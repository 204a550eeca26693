package tunnel

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
)

// A resumption refused because a reload removed the ticket's peer, or
// replaced its key, after the responder's lookup and before the ticket was
// spent leaves the ticket unspent: it is refused under the reason the
// lookup gives for the same ("peer removed", "peer key changed"), and a
// responder that shares the ticket ring and has the peer as the ticket
// names it still accepts the ticket. Before the fix the ring spent the
// ticket first and the peer check after it refused quietly, so that
// responder refused it as reused. A replay of the accepted resumption is
// still refused, by its timestamp and, where the timestamp was forgotten,
// by the ring's one-use record.
func TestResumptionRefusedByReloadLeavesTicketUnspent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		reload func(cfg *conf.Config, t *testing.T) // b's configuration as the reload makes it
	}{
		{"key changed", "peer key changed", func(cfg *conf.Config, t *testing.T) {
			cfg.Peers = []conf.Peer{cfg.Peers[0]}
			cfg.Peers[0].PublicKey = mustKey(t).PublicKey()
			cfg.Peers[0].Endpoint = "" // b makes no handshake of its own to the replaced peer
		}},
		{"peer removed", "peer removed", func(cfg *conf.Config, t *testing.T) {
			cfg.Peers = nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testResumptionRefusedByReload(t, tc.reason, tc.reload)
		})
	}
}

func testResumptionRefusedByReload(t *testing.T, reason string, reload func(*conf.Config, *testing.T)) {
	var p *pair
	var hook atomic.Pointer[func()] // run once by b's next LookupPeer
	// [tickets] on, as the ring in Options is: reloads keep resumption on.
	ticketsOn := func(a, b *conf.Config) {
		for _, c := range []*conf.Config{a, b} {
			c.Tickets.Enabled, c.Tickets.ReauthAfter = true, 24*time.Hour
		}
	}
	p = newPairOpts(t, ticketsOn, 0, nil, func(h *host, o *Options) {
		withTickets(&p)(h, o)
		if h.cfg.Interface.PeerID == "beta" { // b (p is set once newPairOpts returns)
			o.afterLookup = func(string) {
				if f := hook.Swap(nil); f != nil {
					(*f)()
				}
			}
		}
	})
	var captured atomic.Pointer[[]byte] // a's resumption, kept from b until the reload is armed
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if len(b) > 0 && b[0] == handshake.MessageTypeResumptionInitiation {
			c := append([]byte(nil), b...)
			captured.CompareAndSwap(nil, &c)
			return false
		}
		return true
	}
	p.net.mu.Unlock()
	p.exchange(t, 0)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })
	p.clock.Advance(121 * time.Second) // past rekey_after: a's next packet starts a resumption
	p.exchange(t, 1)
	waitFor(t, 5*time.Second, "a's resumption", func() bool { return captured.Load() != nil })
	m5 := *captured.Load()
	fromA, toB := netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under)

	// The reload lands between b's lookup (which still finds the peer as
	// the ticket names it) and the spending of the ticket.
	reloaded := *p.b.cfg
	reload(&reloaded, t)
	reloadDone := make(chan error, 1)
	f := func() { reloadDone <- p.b.dev.Reload(&reloaded) }
	hook.Store(&f)
	p.net.inject(fromA, toB, m5)
	select {
	case err := <-reloadDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b never looked the resumption's peer up")
	}
	// b is done with the resumption once the index it reserved for it is
	// free again (the reload took the peer's other indices with its keys).
	waitFor(t, 5*time.Second, "b to finish with the resumption", func() bool {
		p.b.dev.indices.mu.RLock()
		defer p.b.dev.indices.mu.RUnlock()
		return len(p.b.dev.indices.m) == 0
	})

	// c: b's identity and ticket ring, with a configured as the ticket
	// names it. A ticket b spent, c refuses as reused.
	ccfg := *p.b.cfg
	ccfg.Peers = []conf.Peer{p.b.cfg.Peers[0]}
	ccfg.Peers[0].Endpoint = ""
	c := &host{tun: newMemTUN(), bind: p.net.bind("198.18.0.3:51820"), cfg: &ccfg, under: "198.18.0.3:51820"}
	dev, err := New(c.cfg, Options{TUN: c.tun, Bind: c.bind, Now: p.clock.Now, TickInterval: -1, QuietStart: true,
		Tickets: p.b.dev.ticketRing, Logger: slog.New(slog.NewTextHandler(testWriter{t, "c"}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.dev = dev
	t.Cleanup(func() { c.dev.Close() }) // before the pair's cleanup counts goroutines
	toC := netip.MustParseAddrPort(c.under)
	p.net.inject(fromA, toC, m5)
	waitFor(t, 5*time.Second, "c to answer the resumption", func() bool {
		st := c.peerStatus(t)
		return st.HandshakesResumed == 1 || len(st.ResumptionsRefused) != 0
	})
	if st := c.peerStatus(t); st.HandshakesResumed != 1 {
		t.Fatalf("c refused the ticket b refused (%v): b spent it", st.ResumptionsRefused)
	}

	// b counted and logged its refusal as the lookup's refusal of the same.
	waitFor(t, 5*time.Second, "b to refuse the resumption as "+reason, func() bool {
		return p.b.dev.Status().ResumptionsRefused[reason] == 1
	})
	if st := p.b.dev.Status(); st.Drops[DropHandshakeFailed] != 1 || len(st.ResumptionsRefused) != 1 {
		t.Fatalf("b after the refusal: drops %v, refused %v; want one %s, one %q", st.Drops, st.ResumptionsRefused, DropHandshakeFailed, reason)
	}

	// A replay of the accepted resumption: refused by its timestamp, and
	// once c forgot the timestamp (the peer removed and added again), by
	// the ring's record of the used ticket.
	p.net.inject(fromA, toC, m5)
	waitFor(t, 5*time.Second, "c to refuse the replay", func() bool {
		return c.dev.Status().ResumptionsRefused["replayed"] == 1
	})
	without := ccfg
	without.Peers = nil
	for _, cfg := range []*conf.Config{&without, &ccfg} {
		if err := c.dev.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	p.net.inject(fromA, toC, m5)
	waitFor(t, 5*time.Second, "c to refuse the replay as reused", func() bool {
		return c.dev.Status().ResumptionsRefused["ticket reused"] == 1
	})
	if st := c.dev.Status(); st.ResumptionsRefused["replayed"] != 1 || st.Peers[0].HandshakesResumed != 0 {
		t.Fatalf("c after the replays: refused %v, the re-added peer resumed %d times", st.ResumptionsRefused, st.Peers[0].HandshakesResumed)
	}
}
