package tunnel

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"stunnel/handshake"
)

// A packet that authenticates under a key past reject_after is counted as
// key_expired, not replayed: replays suggest an attack, an expired key a
// late packet or a peer that did not rekey. A true replay still counts as
// replayed.
func TestPacketUnderExpiredKeyIsNotCountedAsReplay(t *testing.T) {
	p := newPair(t, nil)
	aUnder, bUnder := netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under)
	var mu sync.Mutex
	var hold bool         // guarded by mu: keep a's next data packets off the wire
	var held, last []byte // guarded by mu
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if from != aUnder || b[0] != handshake.MessageTypeData || len(b) <= 32 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		c := append([]byte(nil), b...)
		if hold {
			held = c
			return false
		}
		last = c
		return true
	}
	p.net.mu.Unlock()

	first := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("delivered"))
	p.a.tun.toTunnel <- first
	p.b.expect(t, first)
	mu.Lock()
	hold = true
	delivered := last
	mu.Unlock()
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("late"))
	waitFor(t, 5*time.Second, "a's second packet to be held back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return held != nil
	})

	p.net.inject(aUnder, bUnder, delivered)
	waitFor(t, 5*time.Second, "the replay to be counted", func() bool {
		return p.b.peerStatus(t).Drops[DropReplayed] == 1
	})

	p.clock.Advance(p.b.dev.host.Policy().RejectAfterTime) // the key is dead now
	mu.Lock()
	late := held
	mu.Unlock()
	p.net.inject(aUnder, bUnder, late) // never seen, authenticates, but too late
	waitFor(t, 5*time.Second, "the late packet to be counted as key_expired", func() bool {
		return p.b.peerStatus(t).Drops[DropKeyExpired] == 1
	})
	if got := p.b.peerStatus(t).Drops[DropReplayed]; got != 1 {
		t.Fatalf("replayed = %d after a packet under an expired key, want 1 (the true replay only)", got)
	}
	select {
	case got := <-p.b.tun.fromTunnel:
		t.Fatalf("a packet under an expired key reached the TUN: %x", got)
	default:
	}
}
