package tunnel

import (
	"bytes"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/rekey"
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

// When both sides initiate and the winner's initiation goes to an address
// its peer left, the winner answers the peer's initiation instead of
// waiting for an answer that cannot come.
func TestSimultaneousInitiationWithStaleEndpointConverges(t *testing.T) {
	var aWins bool
	p := newPair(t, func(a, b *conf.Config) {
		aWins = !rekey.YieldToPeer(a.Interface.PublicKey, b.Interface.PublicKey)
		stale := "198.18.0.99:51820" // the loser is no longer there
		if aWins {
			a.Peers[0].Endpoint = stale
		} else {
			b.Peers[0].Endpoint = stale
		}
	})
	winner, loser := p.a, p.b
	wsrc, wdst := "198.19.0.1", "198.19.0.2"
	if !aWins {
		winner, loser = p.b, p.a
		wsrc, wdst = wdst, wsrc
	}
	toLoser := ipv4UDP(wsrc, wdst, []byte("w"))
	winner.tun.toTunnel <- toLoser // the winner's initiation goes nowhere
	waitFor(t, 5*time.Second, "the winner's initiation", func() bool {
		return winner.peerStatus(t).TxPackets == 0 && winner.dev.peers.Load().list[0].initiationPending()
	})
	toWinner := ipv4UDP(wdst, wsrc, []byte("l"))
	loser.tun.toTunnel <- toWinner
	winner.expect(t, toWinner)
	loser.expect(t, toLoser) // the winner's queued packet follows on the loser's session
}

func (p *Peer) initiationPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.initiation != nil
}

// stream keeps a's kernel sending pkt and b's kernel reading what arrives,
// until stop closes; wg counts both goroutines.
func (p *pair) stream(pkt []byte, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case p.a.tun.toTunnel <- pkt:
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-p.b.tun.fromTunnel:
			}
		}
	}()
}
