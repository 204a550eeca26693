package tunnel

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// restartHost closes h's device with its state saved and starts a new one
// on a new TUN and the same address, restoring that state.
func (p *pair) restartHost(t *testing.T, h *host, keepState bool) RestoreSummary {
	t.Helper()
	return p.restartHostWith(t, h, keepState, nil)
}

// restartHostWith is restartHost with opts changing the new device's
// options.
func (p *pair) restartHostWith(t *testing.T, h *host, keepState bool, opts func(*Options)) RestoreSummary {
	t.Helper()
	state, err := h.dev.CloseAndSave()
	if err != nil {
		t.Fatal(err)
	}
	if !keepState {
		state = nil
	}
	h.tun = newMemTUN()
	h.bind = p.net.bind(h.under)
	o := Options{TUN: h.tun, Bind: h.bind, Now: p.clock.Now, TickInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RestoreState: state}
	if opts != nil {
		opts(&o)
	}
	d, err := New(h.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	h.dev = d
	return d.Restored()
}

// A clean restart of b with its saved state: a sees no handshake and no
// counter reset, traffic continues both ways, and a packet accepted before
// the restart is refused after it.
func TestRestartRestoresSessions(t *testing.T) {
	p := newPair(t, nil)
	aUnder, bUnder := netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under)
	var lastData atomic.Pointer[[]byte] // the last data packet a sent to b
	p.net.mu.Lock()
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if from == aUnder && len(b) > 32 && b[0] == 4 {
			c := append([]byte(nil), b...)
			lastData.Store(&c)
		}
		return true
	}
	p.net.mu.Unlock()
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("before"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("before back"))
	p.b.tun.toTunnel <- back
	p.a.expect(t, back)
	before := *lastData.Load()
	handshakes := p.a.peerStatus(t).Handshakes

	sum := p.restartHost(t, p.b, true)
	if sum.Sessions != 1 || sum.Peers != 1 {
		t.Fatalf("restore: %s", sum)
	}
	if !p.b.peerStatus(t).Restored {
		t.Fatal("show does not mark the restored session")
	}
	out = ipv4UDP("198.19.0.1", "198.19.0.2", []byte("after"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	back = ipv4UDP("198.19.0.2", "198.19.0.1", []byte("after back"))
	p.b.tun.toTunnel <- back
	p.a.expect(t, back)
	if got := p.a.peerStatus(t).Handshakes; got != handshakes {
		t.Fatalf("a handshook again across b's restart (%d, was %d)", got, handshakes)
	}
	p.net.inject(aUnder, bUnder, before) // replayed from before the restart
	waitFor(t, 5*time.Second, "the replay to be refused", func() bool {
		return p.b.peerStatus(t).Drops[DropReplayed] == 1
	})

	// Without the state (a crash): nothing is restored.
	if sum := p.restartHost(t, p.b, false); sum.Sessions != 0 {
		t.Fatalf("restored without a state: %s", sum)
	}
}

// A state saved while running (RestoreTicketsOnly, from a state file whose
// CleanStop is false) brings no session back, even when it carries one:
// its counters went on being used after it was taken.
func TestRestoreTicketsOnlyRestoresNoSession(t *testing.T) {
	p := newPair(t, nil)
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("before"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	state, err := p.b.dev.CloseAndSave() // carries b's session
	if err != nil {
		t.Fatal(err)
	}
	p.b.tun = newMemTUN()
	p.b.bind = p.net.bind(p.b.under)
	d, err := New(p.b.cfg, Options{TUN: p.b.tun, Bind: p.b.bind, Now: p.clock.Now, TickInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RestoreState: state, RestoreTicketsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	p.b.dev = d
	if sum := d.Restored(); sum.Sessions != 0 || sum.Peers != 0 || sum.Dropped["saved while running"] != 1 {
		t.Fatalf("restore of a state saved while running: %s", sum)
	}
	if p.b.peerStatus(t).Restored {
		t.Fatal("show marks a session restored from a state saved while running")
	}
}

// A gateway group's peer whose session, at a clean stop, was with a later
// gateway of its list (it had failed over) comes back pointed at that
// gateway, the restored session's: sent to the first gateway, which does
// not know the session (or is still down), the restored session was lost,
// and traffic stopped until failover_after moved the peer on and a new
// handshake replaced it.
func TestRestartKeepsTheGatewayFailedOverTo(t *testing.T) {
	p := newPair(t, withGroup(deadGateway))
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("before"))
	p.a.tun.toTunnel <- out
	waitFor(t, 5*time.Second, "the first initiation", func() bool { return p.a.dev.peers.Load().list[0].sess.Initiating() })
	p.clock.Advance(3 * time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	p.b.expect(t, out)
	back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("before back"))
	p.b.tun.toTunnel <- back
	p.a.expect(t, back)
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under || s.Failovers != 1 {
		t.Fatalf("before the restart: endpoint %q, failovers %d; want %s after one failover", s.Endpoint, s.Failovers, p.b.under)
	}
	handshakes := p.b.peerStatus(t).Handshakes

	if sum := p.restartHost(t, p.a, true); sum.Sessions != 1 {
		t.Fatalf("restore: %s", sum)
	}
	s := p.a.peerStatus(t)
	if s.Endpoint != p.b.under || len(s.StandbyEndpoints) != 1 || s.StandbyEndpoints[0] != deadGateway {
		t.Errorf("after the restart: endpoint %q, standby %q; want the gateway the session is with, %s", s.Endpoint, s.StandbyEndpoints, p.b.under)
	}
	p.exchange(t, 'a') // both ways, on the restored session
	if got := p.b.peerStatus(t).Handshakes; got != handshakes {
		t.Errorf("the gateway saw a handshake across the restart (%d, was %d): the restored session was not used", got, handshakes)
	}
}

// As above, with the group's first gateway a DNS name still being looked up
// when the state is restored: the peer had no endpoint yet, so the restore
// set the saved address but not the group member, and the lookup's answer,
// when it came, pointed the peer back at the first gateway: the restored
// session was lost (how often depended on DNS timing).
func TestRestartKeepsTheGatewayWhileANameIsLookedUp(t *testing.T) {
	const name = "gw-a.test:51820"
	answer := func(hostport string) (netip.AddrPort, error) {
		if hostport != name {
			return netip.AddrPort{}, fmt.Errorf("no such host: %s", hostport)
		}
		return netip.MustParseAddrPort(deadGateway), nil
	}
	p := newPairOpts(t, withGroup(name), 0, nil, func(h *host, o *Options) {
		o.Resolve = func(ctx context.Context, hostport string) (netip.AddrPort, error) { return answer(hostport) }
	})
	waitFor(t, 5*time.Second, "the first lookup", func() bool { return p.a.peerStatus(t).Endpoint == deadGateway })
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("before"))
	p.a.tun.toTunnel <- out
	waitFor(t, 5*time.Second, "the first initiation", func() bool { return p.a.dev.peers.Load().list[0].sess.Initiating() })
	p.clock.Advance(3 * time.Second)
	p.a.dev.checkFailover(p.clock.Now())
	p.b.expect(t, out)
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under || s.Failovers != 1 {
		t.Fatalf("before the restart: endpoint %q, failovers %d; want %s after one failover", s.Endpoint, s.Failovers, p.b.under)
	}
	handshakes := p.b.peerStatus(t).Handshakes

	release := make(chan struct{})
	sum := p.restartHostWith(t, p.a, true, func(o *Options) {
		o.Resolve = func(ctx context.Context, hostport string) (netip.AddrPort, error) {
			select { // a slow DNS server: answers once the restore is done
			case <-release:
				return answer(hostport)
			case <-ctx.Done():
				return netip.AddrPort{}, ctx.Err()
			}
		}
	})
	if sum.Sessions != 1 {
		t.Fatalf("restore: %s", sum)
	}
	peer := p.a.dev.peers.Load().list[0]
	if !peer.resolving.Load() {
		t.Fatal("the name's lookup was not running at the restore: the test no longer tests anything")
	}
	close(release)
	waitFor(t, 5*time.Second, "the lookup to end", func() bool { return !peer.resolving.Load() })
	if s := p.a.peerStatus(t); s.Endpoint != p.b.under {
		t.Fatalf("after the name's lookup: endpoint %q, standby %q; want the gateway the session is with, %s", s.Endpoint, s.StandbyEndpoints, p.b.under)
	}
	out = ipv4UDP("198.19.0.1", "198.19.0.2", []byte("after"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	if got := p.b.peerStatus(t).Handshakes; got != handshakes {
		t.Errorf("the gateway saw a handshake across the restart (%d, was %d): the restored session was not used", got, handshakes)
	}
}
