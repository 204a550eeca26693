package tunnel

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/rekey"
)

// Reloads that remove and re-add a peer while packets flow both ways, with
// the schedule running: once Reload has returned, nothing more goes to the
// removed peer, its keys are zeroed, and at the end every buffer is back
// and every goroutine gone (newPairOpts' cleanup counts them).
func TestReloadUnderTrafficBothWays(t *testing.T) {
	for _, inline := range inlineModes {
		p := newPairOpts(t, nil, inline, nil, func(h *host, o *Options) { o.TickInterval = 0 })
		toB := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("to b"))
		toA := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("to a"))
		p.a.tun.toTunnel <- toB
		p.b.expect(t, toB)

		aUnder, bUnder := netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under)
		var toBeta atomic.Int64
		p.net.mu.Lock()
		p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
			if from == aUnder && to == bUnder {
				toBeta.Add(1)
			}
			return true
		}
		p.net.mu.Unlock()

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var once sync.Once
		halt := func() { once.Do(func() { close(stop); wg.Wait() }) }
		t.Cleanup(halt)
		p.stream(toB, stop, &wg)
		streamBetween(p.b, p.a, toA, stop, &wg) // b's kernel sends too, and a's reads what arrives

		with, without := *p.a.cfg, *p.a.cfg
		without.Peers = []conf.Peer{{ID: "gamma", PublicKey: mustKey(t).PublicKey(),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.3/32")}}}
		for range 50 {
			beta := p.a.dev.peers.Load().byID["beta"]
			var kps []*rekey.Keypair
			waitFor(t, 5*time.Second, "beta to have a session", func() bool {
				kps = keypairsOf(beta)
				return len(kps) > 0
			})
			unknown := p.a.dev.Status().Drops[DropUnknownIndex]
			if err := p.a.dev.Reload(&without); err != nil {
				t.Fatal(err)
			}
			sent := toBeta.Load()
			for _, kp := range kps {
				if !kp.IsZeroed() {
					t.Fatal("a key of the removed peer was not zeroed")
				}
			}
			// b goes on sending under its session; a must not answer
			// as beta, nor send anything it held for beta.
			waitFor(t, 5*time.Second, "b's packets to reach a", func() bool {
				return p.a.dev.Status().Drops[DropUnknownIndex] > unknown
			})
			if n := toBeta.Load() - sent; n != 0 {
				t.Fatalf("%d datagrams went to the removed peer after Reload returned", n)
			}
			// The new beta initiates as soon as it is routed to (before
			// Reload returns): its initiation must carry a later timestamp
			// than the last one b accepted from a.
			p.clock.Advance(time.Second)
			if err := p.a.dev.Reload(&with); err != nil {
				t.Fatal(err)
			}
			p.a.dev.peers.Load().byID["beta"].wantHandshake()
		}
		halt()
		if err := p.a.dev.Reload(&without); err != nil {
			t.Fatal(err)
		}
		pool := p.a.dev.pool
		idle := 2 * memBatch
		waitFor(t, 5*time.Second, "every buffer back in a's pool", func() bool { return pool.inUse() == idle })
		p.a.dev.Close()
		p.b.dev.Close()
	}
}
