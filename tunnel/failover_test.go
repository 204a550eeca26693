package tunnel

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
)

const deadGateway = "198.18.9.9:51820" // nothing listens there

// reloadGroup reloads a with its peer's endpoint group changed to
// [first, b].
func (p *pair) reloadGroup(t *testing.T, first string) {
	t.Helper()
	changed := *p.a.cfg
	changed.Peers = slices.Clone(p.a.cfg.Peers)
	changed.Peers[0].Endpoints = []string{first, p.b.under}
	changed.Peers[0].Endpoint = first
	if err := p.a.dev.Reload(&changed); err != nil {
		t.Fatal(err)
	}
}

// withGroup gives a's peer the endpoint group [first, b] with failover.
func withGroup(first string) func(a, b *conf.Config) {
	return func(a, b *conf.Config) {
		pr := &a.Peers[0]
		pr.Endpoints = []string{first, pr.Endpoint}
		pr.Endpoint = first
		pr.PersistentKeepalive = time.Second
		pr.FailoverAfter = 3 * time.Second
	}
}

// A silent first endpoint is left for the next one after failover_after,
// not before; the handshake starts at once; status names both; an
// answering endpoint is kept.
func TestFailoverToNextEndpoint(t *testing.T) {
	p := newPair(t, withGroup(deadGateway))
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	waitFor(t, 5*time.Second, "the first initiation", func() bool { return p.a.dev.peers.Load().list[0].sess.Initiating() })
	p.clock.Advance(2900 * time.Millisecond)
	p.a.dev.checkFailover(p.clock.Now())
	if s := p.a.peerStatus(t); s.Failovers != 0 || s.Endpoint != deadGateway {
		t.Fatalf("failed over before failover_after: %+v", s)
	}
	p.clock.Advance(200 * time.Millisecond)
	p.a.dev.checkFailover(p.clock.Now())
	p.b.expect(t, out) // the queued packet went out once b answered
	s := p.a.peerStatus(t)
	if s.Failovers != 1 || s.Endpoint != p.b.under || !slices.Equal(s.StandbyEndpoints, []string{deadGateway}) {
		t.Fatalf("after failover: endpoint %q standby %q failovers %d", s.Endpoint, s.StandbyEndpoints, s.Failovers)
	}

	// b answers: it is kept however long the link lives.
	for i := 0; i < 5; i++ {
		p.a.tun.toTunnel <- out
		p.b.expect(t, out)
		back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte{2})
		p.b.tun.toTunnel <- back
		p.a.expect(t, back)
		p.clock.Advance(2 * time.Second)
		p.a.dev.checkFailover(p.clock.Now())
	}
	if s := p.a.peerStatus(t); s.Failovers != 1 || s.Endpoint != p.b.under {
		t.Fatalf("left an answering endpoint: %+v", s)
	}

	// An unauthenticated packet neither counts as an answer nor moves us.
	before := p.a.dev.Status().Drops
	p.net.inject(netip.MustParseAddrPort(deadGateway), netip.MustParseAddrPort(p.a.under), make([]byte, 64))
	waitFor(t, 5*time.Second, "a to drop the forged packet", func() bool {
		now := p.a.dev.Status().Drops
		for k, v := range now {
			if v > before[k] {
				return true
			}
		}
		return false
	})
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under {
		t.Fatalf("an unauthenticated packet moved the endpoint to %q", s.Endpoint)
	}
}

// The group wraps around: from the last endpoint back to the first.
func TestFailoverWraps(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		withGroup(deadGateway)(a, b)
		pr := &a.Peers[0]
		pr.Endpoints = []string{pr.Endpoints[1], deadGateway} // b first, then the dead one
		pr.Endpoint = pr.Endpoints[0]
	})
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	// b goes silent: nothing from b reaches a any more.
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool { return from.String() != p.b.under }
	p.net.mu.Unlock()
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	for i, want := range []string{deadGateway, p.b.under} {
		p.clock.Advance(3 * time.Second)
		p.a.dev.checkFailover(p.clock.Now())
		if s := p.a.peerStatus(t); s.Endpoint != want || s.Failovers != uint64(i+1) {
			t.Fatalf("failover %d: endpoint %q failovers %d, want %q", i+1, s.Endpoint, s.Failovers, want)
		}
	}
}

// A DNS endpoint is looked up again every ReresolveInterval; the peer moves
// only when DNS changed, so roaming is not undone by an unchanged name.
func TestPeriodicReresolve(t *testing.T) {
	var mu sync.Mutex
	answer := netip.MustParseAddrPort(deadGateway)
	lookups := 0
	p := newPairOpts(t, func(a, b *conf.Config) {
		a.Peers[0].Endpoint = "gw.test:51820"
		a.Peers[0].Endpoints = []string{"gw.test:51820"}
	}, 0, nil, func(h *host, o *Options) {
		o.Resolve = func(ctx context.Context, hostport string) (netip.AddrPort, error) {
			mu.Lock()
			defer mu.Unlock()
			lookups++
			return answer, nil
		}
	})
	waitFor(t, 5*time.Second, "the first lookup", func() bool { return p.a.peerStatus(t).Endpoint == deadGateway })
	mu.Lock()
	answer = netip.MustParseAddrPort(p.b.under) // the gateway moved
	mu.Unlock()
	p.clock.Advance(ReresolveInterval - time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	if s := p.a.peerStatus(t); s.Endpoint != deadGateway {
		t.Fatalf("looked up before the interval: %q", s.Endpoint)
	}
	p.clock.Advance(time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	waitFor(t, 5*time.Second, "the periodic lookup to find the gateway", func() bool { return p.a.peerStatus(t).Endpoint == p.b.under })
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)

	// An unchanged answer leaves the endpoint alone (it may be a roamed one).
	mu.Lock()
	n := lookups
	mu.Unlock()
	p.clock.Advance(ReresolveInterval)
	p.a.dev.checkFailover(p.clock.Now())
	waitFor(t, 5*time.Second, "the next lookup", func() bool { mu.Lock(); defer mu.Unlock(); return lookups > n })
	waitFor(t, 5*time.Second, "the lookup to finish", func() bool { return !p.a.dev.peers.Load().list[0].resolving.Load() })
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under {
		t.Fatalf("unchanged DNS moved the peer to %q", s.Endpoint)
	}
}

// A reload keeps the endpoint in use when the group is unchanged, and
// starts a changed group at its first endpoint.
func TestReloadEndpointGroup(t *testing.T) {
	p := newPair(t, withGroup(deadGateway))
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	waitFor(t, 5*time.Second, "the first initiation", func() bool { return p.a.dev.peers.Load().list[0].sess.Initiating() })
	p.clock.Advance(3 * time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	p.b.expect(t, out)

	same := *p.a.cfg
	same.Peers = slices.Clone(p.a.cfg.Peers)
	if err := p.a.dev.Reload(&same); err != nil {
		t.Fatal(err)
	}
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under || s.Failovers != 1 {
		t.Fatalf("an unchanged reload moved the peer: %+v", s)
	}

	other := "198.18.9.10:51820"
	p.reloadGroup(t, other)
	if s := p.a.peerStatus(t); s.Endpoint != other || !slices.Equal(s.StandbyEndpoints, []string{p.b.under}) {
		t.Fatalf("a new group does not start at its first endpoint: endpoint %q standby %q", s.Endpoint, s.StandbyEndpoints)
	}
}

// runFailover sleeps only as long as something needs it: a gateway group
// is checked every failoverTick, a single endpoint with failover_after
// every second, a DNS name at its next periodic lookup, and a peer with an
// address literal never (an idle tunnel has no timer). A reload re-plans.
func TestFailoverIntervalOnlyWhatIsNeeded(t *testing.T) {
	p := newPair(t, nil)
	d := p.a.dev
	if w, ok := d.failoverInterval(p.clock.Now()); ok {
		t.Fatalf("address-literal endpoint: sleeps %v, want no timer", w)
	}
	reload := func(mutate func(pr *conf.Peer)) {
		t.Helper()
		cfg := *p.a.cfg
		cfg.Peers = slices.Clone(cfg.Peers)
		mutate(&cfg.Peers[0])
		if err := d.Reload(&cfg); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.failoverKick: // the reload woke runFailover (or will)
		default:
		}
	}
	reload(func(pr *conf.Peer) {
		pr.Endpoint, pr.Endpoints = "gw.example.net:51820", []string{"gw.example.net:51820"}
	})
	w, ok := d.failoverInterval(p.clock.Now())
	if !ok || w < time.Second || w > ReresolveInterval {
		t.Fatalf("DNS endpoint: sleeps %v (%v), want until the next lookup, at most %v", w, ok, ReresolveInterval)
	}
	reload(func(pr *conf.Peer) { pr.Endpoints, pr.FailoverAfter = []string{pr.Endpoint}, 3*time.Second })
	if w, ok := d.failoverInterval(p.clock.Now()); !ok || w != time.Second {
		t.Fatalf("one endpoint with failover_after: sleeps %v (%v), want 1s", w, ok)
	}
	reload(func(pr *conf.Peer) {
		pr.Endpoints = []string{deadGateway, p.b.under}
		pr.Endpoint = deadGateway
		pr.PersistentKeepalive, pr.FailoverAfter = time.Second, 3*time.Second
	})
	if w, ok := d.failoverInterval(p.clock.Now()); !ok || w != failoverTick {
		t.Fatalf("gateway group: sleeps %v (%v), want %v", w, ok, failoverTick)
	}
}

// A failover to a DNS name while another lookup of the peer is still
// running (the periodic one, or the one at the first unanswered retry)
// used to find the peer busy and drop its own lookup: the answer to the
// running one was refused (the group had moved on), so the peer kept
// sending to the silent gateway until the next failover, which, in a group
// of two, went straight back to it.
func TestFailoverWhileALookupRuns(t *testing.T) {
	var mu sync.Mutex
	var gate chan struct{} // non-nil: lookups of the first name wait on it
	started := make(chan struct{}, 4)
	var bUnder string // b's address, known before p is
	p := newPairOpts(t, func(a, b *conf.Config) {
		bUnder = a.Peers[0].Endpoint
		withGroup("gw-a.test:51820")(a, b)
		a.Peers[0].Endpoints[1] = "gw-b.test:51820"
	}, 0, nil, func(h *host, o *Options) {
		o.Resolve = func(ctx context.Context, hostport string) (netip.AddrPort, error) {
			if hostport == "gw-b.test:51820" {
				return netip.MustParseAddrPort(bUnder), nil
			}
			mu.Lock()
			g := gate
			mu.Unlock()
			if g != nil {
				started <- struct{}{}
				<-g
			}
			return netip.MustParseAddrPort(deadGateway), nil
		}
	})
	peer := p.a.dev.peers.Load().list[0]
	waitFor(t, 5*time.Second, "the first lookup", func() bool { return p.a.peerStatus(t).Endpoint == deadGateway })
	waitFor(t, 5*time.Second, "it to finish", func() bool { return !peer.resolving.Load() })
	mu.Lock()
	gate = make(chan struct{})
	mu.Unlock()
	peer.reresolve(false) // gw-a looked up again, and slow to answer
	<-started
	peer.fo.sent(p.clock.Now())
	p.clock.Advance(3 * time.Second)
	p.a.dev.checkFailover(p.clock.Now()) // to gw-b, while gw-a's lookup runs
	close(gate)
	waitFor(t, 5*time.Second, "a to send to gw-b", func() bool { return p.a.peerStatus(t).Endpoint == p.b.under })
	waitFor(t, 5*time.Second, "the handshake the failover started", func() bool { return p.b.peerStatus(t).Handshakes == 1 })
}

// A reload that changes the group starts its first endpoint with a silence
// clock of its own: silence toward the old endpoint must not count against
// the new one, which would otherwise be left before anything was sent to it.
func TestReloadedGroupGetsItsOwnSilence(t *testing.T) {
	p := newPair(t, withGroup(deadGateway))
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	waitFor(t, 5*time.Second, "the first initiation", func() bool { return p.a.dev.peers.Load().list[0].sess.Initiating() })
	p.clock.Advance(2900 * time.Millisecond) // deadGateway silent for almost failover_after

	other := "198.18.9.10:51820"
	p.reloadGroup(t, other)
	p.clock.Advance(200 * time.Millisecond)
	p.a.dev.checkFailover(p.clock.Now())
	if s := p.a.peerStatus(t); s.Endpoint != other || s.Failovers != 0 {
		t.Fatalf("the reloaded group's first endpoint was left 0.2 s after the reload: endpoint %q, failovers %d", s.Endpoint, s.Failovers)
	}
}

// A gateway that was cut off, not stopped, and comes back after the client
// failed over still holds the old session and may send under it (data for
// the client's subnets, keepalives). The client opens it (the previous
// keypair lives until reject_after) but must neither move back to that
// gateway, where its traffic under the current session would be dropped,
// nor count it as the gateway in use answering. It did both: the endpoint
// flapped between the two gateways until the old keypair ended, and the
// reset silence clock hid a dead gateway B.
func TestOldSessionFromTheGatewayLeftBehind(t *testing.T) {
	const (
		asA = iota // b answers as gateway A (at deadGateway): session 1
		cut        // A is cut off: what it sends the client is held back
		onB        // b is gateway B at its own address: session 2
	)
	var phase, lostToA atomic.Int32
	var mu sync.Mutex
	var held [][]byte // data packets A sent under session 1 while cut off
	p := newPair(t, withGroup(deadGateway))
	gwA, gwB, client := netip.MustParseAddrPort(deadGateway), netip.MustParseAddrPort(p.b.under), netip.MustParseAddrPort(p.a.under)
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		switch {
		case to == gwA: // the client to A
			if phase.Load() == asA {
				p.net.inject(from, gwB, b)
			} else if b[0] == handshake.MessageTypeData && len(b) > 32 {
				lostToA.Add(1)
			}
			return false
		case from == gwB && to == client && phase.Load() == asA:
			p.net.inject(gwA, client, b)
			return false
		case from == gwB && to == client && phase.Load() == cut:
			if b[0] == handshake.MessageTypeData && len(b) > 32 {
				mu.Lock()
				held = append(held, append([]byte(nil), b...))
				mu.Unlock()
			}
			return false
		}
		return true
	}
	p.net.mu.Unlock()
	p.exchange(t, 1) // session 1, with A
	if s := p.a.peerStatus(t); s.Endpoint != deadGateway || s.Handshakes != 1 {
		t.Fatalf("not on A: endpoint %q, %d handshakes", s.Endpoint, s.Handshakes)
	}
	old := p.a.peerStatus(t).SessionID
	peer := p.a.dev.peers.Load().list[0]
	_, session1, _ := peer.sess.Slots()

	phase.Store(cut)
	late := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("late"))
	p.b.tun.toTunnel <- late
	waitFor(t, 5*time.Second, "A's packet to be held back", func() bool { mu.Lock(); defer mu.Unlock(); return len(held) == 1 })
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{2})
	p.a.tun.toTunnel <- out // lost: starts the silence clock
	waitFor(t, 5*time.Second, "the client to send to A", func() bool { return lostToA.Load() == 1 })
	waitFor(t, 5*time.Second, "the silence clock to start", func() bool { return peer.fo.silentFrom.Load() != 0 })

	phase.Store(onB)
	p.clock.Advance(3 * time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	waitFor(t, 5*time.Second, "session 2, with B", func() bool { return p.a.peerStatus(t).Handshakes == 2 })
	p.exchange(t, 3)
	s := p.a.peerStatus(t)
	if s.Endpoint != p.b.under || s.SessionID == old {
		t.Fatalf("not on B under a new session: endpoint %q, session %s (old %s)", s.Endpoint, s.SessionID, old)
	}
	// B goes silent from here on; the client sends.
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	waitFor(t, 5*time.Second, "the silence clock to start", func() bool { return peer.fo.silentFrom.Load() != 0 })
	silentFrom := peer.fo.silentFrom.Load()

	// A comes back and sends under session 1, which the client still holds
	// as its previous keypair: the data is delivered, nothing else changes.
	if prev, _, _ := peer.sess.Slots(); prev != session1 {
		t.Fatal("session 1 is not the client's previous keypair")
	}
	p.net.inject(gwA, client, held[0])
	p.a.expect(t, late)
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under {
		t.Fatalf("a packet under the previous session moved the client back to %q", s.Endpoint)
	}
	if got := peer.fo.silentFrom.Load(); got != silentFrom {
		t.Fatalf("a packet under the previous session counted as B answering (silent from %d, now %d)", silentFrom, got)
	}
	p.clock.Advance(3 * time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	if s := p.a.peerStatus(t); s.Failovers != 2 {
		t.Fatalf("a silent B was kept: %d failovers, want 2", s.Failovers)
	}
}

// A peer with one endpoint keeps WireGuard's rule: an authenticated packet
// under any keypair, the previous one too, moves the endpoint.
func TestOldSessionRoamsASingleEndpoint(t *testing.T) {
	var holding atomic.Bool
	var mu sync.Mutex
	var held []byte
	p := newPair(t, nil)
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if !holding.Load() || from.String() != p.b.under || b[0] != handshake.MessageTypeData || len(b) == 32 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if held == nil {
			held = append([]byte(nil), b...)
		}
		return false
	}
	p.net.mu.Unlock()
	p.exchange(t, 1)
	peer := p.a.dev.peers.Load().list[0]
	_, session1, _ := peer.sess.Slots()
	holding.Store(true)
	late := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("late"))
	p.b.tun.toTunnel <- late
	waitFor(t, 5*time.Second, "b's packet to be held back", func() bool { mu.Lock(); defer mu.Unlock(); return held != nil })
	holding.Store(false)
	p.clock.Advance(121 * time.Second) // past rekey_after: a's next send starts a handshake
	p.exchange(t, 2)
	waitFor(t, 5*time.Second, "the rekey", func() bool { return p.a.peerStatus(t).Handshakes == 2 })
	p.exchange(t, 3)
	if prev, _, _ := peer.sess.Slots(); prev != session1 {
		t.Fatal("session 1 is not the previous keypair")
	}
	moved := netip.MustParseAddrPort("198.18.0.77:51820")
	p.net.inject(moved, netip.MustParseAddrPort(p.a.under), held)
	p.a.expect(t, late)
	if s := p.a.peerStatus(t); s.Endpoint != moved.String() {
		t.Fatalf("a packet under the previous keypair did not roam a single endpoint: %q", s.Endpoint)
	}
}

// The answer to a packet can be read before the send that carried it
// returns (a near gateway, a busy sender). The silence clock must then stay
// stopped: started after that answer, it would run on until the next one
// and leave a gateway that answered everything once failover_after passed
// with nothing more to send.
func TestAnswerBeforeTheSendReturnsStopsTheClock(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		pr := &a.Peers[0]
		pr.Endpoints = []string{pr.Endpoint, deadGateway}
		pr.FailoverAfter = 3 * time.Second
	})
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte{2})
	p.b.tun.toTunnel <- back
	p.a.expect(t, back)
	peer := p.a.dev.peers.Load().list[0]
	if from := peer.fo.silentFrom.Load(); from != 0 {
		t.Fatalf("the clock runs after b answered: %d", from)
	}

	// b's answer to the next packet is read while a's send of it is still
	// under way: the filter runs inside a's Send.
	var answerDuringSend atomic.Bool
	answerDuringSend.Store(true)
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if from.String() == p.a.under && answerDuringSend.CompareAndSwap(true, false) {
			peer.fo.answered()
		}
		return true
	}
	p.net.mu.Unlock()
	sentBefore := p.a.peerStatus(t).TxPackets
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	waitFor(t, 5*time.Second, "a to account for its send", func() bool { return p.a.peerStatus(t).TxPackets > sentBefore })
	if answerDuringSend.Load() {
		t.Fatal("the filter never saw a's packet")
	}
	if from := peer.fo.silentFrom.Load(); from != 0 {
		t.Fatalf("the silence clock runs (for %v) although b answered during the send", peer.fo.since(from, p.clock.Now()))
	}
	p.clock.Advance(3100 * time.Millisecond)
	p.a.dev.checkFailover(p.clock.Now())
	if s := p.a.peerStatus(t); s.Failovers != 0 || s.Endpoint != p.b.under {
		t.Fatalf("an answering gateway was left: endpoint %q, failovers %d", s.Endpoint, s.Failovers)
	}
}
