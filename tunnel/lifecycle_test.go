package tunnel

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
)

// Closing a tunnel while packets pour in both ways must neither panic nor
// put a packet on the wire that was not sealed.
func TestCloseUnderLoadIsClean(t *testing.T) {
	marker := []byte("PLAINTEXT-MARKER-PLAINTEXT")
	for i := range 20 {
		p := newPairInline(t, nil, inlineModes[i%len(inlineModes)])
		var mu sync.Mutex
		var recorded [][]byte
		var leaked atomic.Int32
		p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
			if bytes.Contains(b, marker) {
				leaked.Add(1)
			}
			if b[0] == handshake.MessageTypeData && len(b) > 32 {
				mu.Lock()
				recorded = append(recorded, append([]byte(nil), b...))
				mu.Unlock()
			}
			return true
		}
		out := ipv4UDP("198.19.0.1", "198.19.0.2", marker)
		p.a.tun.toTunnel <- out
		p.b.expect(t, out)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		p.stream(out, stop, &wg)
		wg.Add(1)
		go func() { // replays authenticate, so they run the whole receive path
			defer wg.Done()
			from, to := netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under)
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				r := append([][]byte{}, recorded...)
				mu.Unlock()
				for _, pkt := range r {
					p.net.inject(from, to, pkt)
				}
			}
		}()
		waitFor(t, 5*time.Second, "replays under load", func() bool { return p.b.peerStatus(t).Drops[DropReplayed] > 50 })
		p.b.dev.Close()
		p.a.dev.Close()
		close(stop)
		wg.Wait()
		if n := leaked.Load(); n > 0 {
			t.Fatalf("%d datagrams carried plaintext on the wire", n)
		}
	}
}

// A peer removed by a reload while traffic flows to it must give back every
// buffer: a reader holding the old peer set must not park packets with it.
func TestReloadRemovingPeerUnderTrafficLeaksNothing(t *testing.T) {
	p := newPair(t, nil)
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("x"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	pool := p.a.dev.pool
	idle := 2 * memBatch // the TUN and UDP readers' read vectors
	waitFor(t, 5*time.Second, "a to be idle", func() bool { return pool.inUse() == idle })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	p.stream(out, stop, &wg)
	with, without := *p.a.cfg, *p.a.cfg
	without.Peers = []conf.Peer{{ID: "gamma", PublicKey: mustKey(t).PublicKey(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.3/32")}}}
	for range 100 {
		if err := p.a.dev.Reload(&without); err != nil {
			t.Fatal(err)
		}
		if err := p.a.dev.Reload(&with); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if err := p.a.dev.Reload(&without); err != nil { // the last beta's pending packets go too
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "every buffer back in the pool", func() bool { return pool.inUse() == idle })
}

// When both sides initiate at once and one initiation is lost on the wire,
// the other is answered at once: no valid initiation waits for a message
// that may never arrive. The fake clock never moves, so no retry can rescue
// a rule that ignored the peer's initiation (the old tie-break did).
func TestCrossingInitiationAnsweredWhenOursIsLost(t *testing.T) {
	p := newPair(t, nil)
	aUnder := netip.MustParseAddrPort(p.a.under)
	var lost atomic.Bool
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		return !(from == aUnder && len(b) > 0 && b[0] == handshake.MessageTypeInitiation && lost.CompareAndSwap(false, true))
	}
	p.net.mu.Unlock()

	toB := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("a"))
	p.a.tun.toTunnel <- toB // a's initiation is lost
	waitFor(t, 5*time.Second, "a's initiation on the wire", func() bool {
		return lost.Load() && p.a.dev.peers.Load().list[0].sess.Initiating()
	})
	toA := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("b"))
	p.b.tun.toTunnel <- toA // b initiates while a's own initiation is pending
	p.a.expect(t, toA)
	p.b.expect(t, toB) // a's queued packet follows on b's session
}

// stream keeps a's kernel sending pkt and b's kernel reading what arrives,
// until stop closes; wg counts both goroutines.
func (p *pair) stream(pkt []byte, stop <-chan struct{}, wg *sync.WaitGroup) {
	streamBetween(p.a, p.b, pkt, stop, wg)
}

// streamBetween keeps from's kernel sending pkt and to's kernel reading
// what arrives, until stop closes; wg counts both goroutines.
func streamBetween(from, to *host, pkt []byte, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case from.tun.toTunnel <- pkt:
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-to.tun.fromTunnel:
			}
		}
	}()
}

// New failing after it started looking up a peer's DNS endpoint (here:
// the listen port is taken) returns only once that lookup has ended, and
// the lookup it abandoned is not reported as one that will be retried:
// nothing of the failed device runs or logs on after New returned.
func TestFailedStartLeavesNoLookupBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	var logs lockedBuffer
	cfg := &conf.Config{
		Path:      "a.toml",
		Interface: conf.Interface{Name: "sta", PeerID: "alpha", PrivateKey: mustKey(t), ListenPort: 51820, MTU: 1420},
		Peers: []conf.Peer{{ID: "beta", PublicKey: mustKey(t).PublicKey(), Endpoint: "gw.test:51820",
			Endpoints: []string{"gw.test:51820"}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32")}}},
	}
	var started, returned atomic.Bool
	_, err := New(cfg, Options{TUN: newMemTUN(), Bind: busyBind{newMemNet().bind("198.18.0.1:51820")},
		Now: newFakeClock().Now, TickInterval: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Resolve: func(ctx context.Context, hostport string) (netip.AddrPort, error) {
			started.Store(true)
			defer returned.Store(true)
			<-ctx.Done() // a slow DNS server: the lookup ends when the device gives up
			return netip.AddrPort{}, ctx.Err()
		}})
	if err == nil {
		t.Fatal("New on a taken port succeeded")
	}
	if !started.Load() {
		t.Fatal("no lookup started: the test no longer tests anything")
	}
	if !returned.Load() {
		t.Error("New returned while its lookup still ran")
	}
	waitFor(t, 5*time.Second, "the failed device's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if strings.Contains(logs.String(), "will retry") {
		t.Error("the failed start's abandoned lookup was logged as one to retry")
	}
}
