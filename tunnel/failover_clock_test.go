package tunnel

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/internal/fakeclock"
)

// The silence of failover_after is measured on the monotonic clock, as
// every other timer. It was kept as Unix nanoseconds, the wall clock: a
// step forward (NTP, a VM resumed) moved the peer off a gateway that had
// had a second to answer, and a step back kept it on a dead one for as
// long as the step.
func TestFailoverIgnoresWallClockSteps(t *testing.T) {
	clk := fakeclock.NewMonotonic()
	p := newPairOpts(t, withGroup(deadGateway), 0, nil, func(h *host, o *Options) { o.Now = clk.Now })
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{1})
	p.a.tun.toTunnel <- out
	waitFor(t, 5*time.Second, "the first initiation", func() bool { return p.a.dev.peers.Load().list[0].sess.Initiating() })

	clk.StepWall(time.Hour)
	clk.Advance(time.Second)
	p.a.dev.checkFailover(clk.Now())
	if s := p.a.peerStatus(t); s.Failovers != 0 || s.Endpoint != deadGateway {
		t.Fatalf("the wall clock stepped an hour forward, and the peer failed over after 1s of silence: %+v", s)
	}

	clk.StepWall(-2 * time.Hour)
	clk.Advance(2100 * time.Millisecond) // 3.1 s of silence, failover_after 3 s
	p.a.dev.checkFailover(clk.Now())
	if s := p.a.peerStatus(t); s.Failovers != 1 || s.Endpoint != p.b.under {
		t.Fatalf("the wall clock stepped back, and the peer stayed on a gateway silent past failover_after: %+v", s)
	}
	p.b.expect(t, out)
}

// The periodic lookup of a DNS endpoint (every ReresolveInterval) runs on
// the monotonic clock too: after a step back of the wall clock it was put
// off, and runFailover slept, for as long as the step.
func TestReresolveIgnoresWallClockSteps(t *testing.T) {
	var mu sync.Mutex
	answer := netip.MustParseAddrPort(deadGateway)
	clk := fakeclock.NewMonotonic()
	p := newPairOpts(t, func(a, b *conf.Config) {
		a.Peers[0].Endpoint = "gw.test:51820"
		a.Peers[0].Endpoints = []string{"gw.test:51820"}
	}, 0, nil, func(h *host, o *Options) {
		o.Now = clk.Now
		o.Resolve = func(ctx context.Context, hostport string) (netip.AddrPort, error) {
			mu.Lock()
			defer mu.Unlock()
			return answer, nil
		}
	})
	waitFor(t, 5*time.Second, "the first lookup", func() bool { return p.a.peerStatus(t).Endpoint == deadGateway })
	mu.Lock()
	answer = netip.MustParseAddrPort(p.b.under) // the gateway moved
	mu.Unlock()

	clk.StepWall(-time.Hour)
	if w, ok := p.a.dev.failoverInterval(clk.Now()); !ok || w > ReresolveInterval {
		t.Fatalf("after the wall clock stepped back an hour, the next lookup is %v away (%v); want at most %v", w, ok, ReresolveInterval)
	}
	clk.Advance(ReresolveInterval)
	p.a.dev.checkFailover(clk.Now())
	waitFor(t, 5*time.Second, "the periodic lookup to find the gateway", func() bool { return p.a.peerStatus(t).Endpoint == p.b.under })
}
