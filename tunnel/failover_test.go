package tunnel

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"stunnel/conf"
)

const deadGateway = "198.18.9.9:51820" // nothing listens there

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

	changed := *p.a.cfg
	changed.Peers = slices.Clone(p.a.cfg.Peers)
	other := "198.18.9.10:51820"
	changed.Peers[0].Endpoints = []string{other, p.b.under}
	changed.Peers[0].Endpoint = other
	if err := p.a.dev.Reload(&changed); err != nil {
		t.Fatal(err)
	}
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

	changed := *p.a.cfg
	changed.Peers = slices.Clone(p.a.cfg.Peers)
	other := "198.18.9.10:51820"
	changed.Peers[0].Endpoints = []string{other, p.b.under}
	changed.Peers[0].Endpoint = other
	if err := p.a.dev.Reload(&changed); err != nil {
		t.Fatal(err)
	}
	p.clock.Advance(200 * time.Millisecond)
	p.a.dev.checkFailover(p.clock.Now())
	if s := p.a.peerStatus(t); s.Endpoint != other || s.Failovers != 0 {
		t.Fatalf("the reloaded group's first endpoint was left 0.2 s after the reload: endpoint %q, failovers %d", s.Endpoint, s.Failovers)
	}
}
