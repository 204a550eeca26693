package tunnel

import (
	"math"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"stunnel/conf"
)

// ReresolveInterval is how often a peer's DNS endpoint is looked up again
// while the tunnel runs (Nebula re-resolves its static hosts as often), so
// a gateway that moved under the same name is found without waiting for a
// handshake to give up.
const ReresolveInterval = 30 * time.Second

// failover is a peer's endpoint-group state: which configured endpoint is
// in use, since when what we sent went unanswered, how often we moved.
// Atomics: written by the sender (sent), the receive path (answered) and
// the failover goroutine (checkFailover); none holds a lock.
//
// Its times count nanoseconds from epoch, a reading of the device's clock
// (at), not Unix time: with time.Now they are monotonic, as every other
// timer's, so a step of the wall clock (NTP, a VM resumed) neither fails
// over from a gateway that answers nor keeps a silent one for as long as
// the step.
type failover struct {
	epoch      time.Time     // immutable: the device's clock when the peer was made
	index      atomic.Int32  // into cfg.Endpoints: the endpoint in use
	silentFrom atomic.Int64  // the first authenticated send since the last authenticated receive (at); 0: none
	count      atomic.Uint64 // failovers so far
	// resolved is the last address a DNS lookup gave for the endpoint in
	// use. A periodic lookup moves the peer only when DNS changed, so it
	// never undoes roaming to an address DNS does not know.
	resolved atomic.Pointer[resolvedName]
	// lastLookup is when the endpoint in use was last looked up (at); 0:
	// never.
	lastLookup atomic.Int64
}

// at is t as the atomics hold it: 1 + ns since epoch, so that 0 stays
// "none" and the epoch itself is exact.
func (f *failover) at(t time.Time) int64 {
	d := min(max(t.Sub(f.epoch), 0), math.MaxInt64-1)
	return int64(d) + 1
}

// since is how long before now the instant at holds came.
func (f *failover) since(at int64, now time.Time) time.Duration {
	return now.Sub(f.epoch.Add(time.Duration(at - 1)))
}

// lookupDue is how long until the endpoint in use is due to be looked up
// again (ReresolveInterval after the last lookup); <= 0: now.
func (f *failover) lookupDue(now time.Time) time.Duration {
	last := f.lastLookup.Load()
	if last == 0 {
		return 0
	}
	return ReresolveInterval - f.since(last, now)
}

type resolvedName struct {
	name string
	addr netip.AddrPort
}

// sent notes that authenticated packets (data or keepalives) went out: the
// silence clock starts unless it already runs.
func (f *failover) sent(now time.Time) {
	f.silentFrom.CompareAndSwap(0, f.at(now))
}

// answered notes an authenticated, non-replayed packet from the peer: the
// endpoint in use answers.
func (f *failover) answered() {
	if f.silentFrom.Load() != 0 {
		f.silentFrom.Store(0)
	}
}

// endpointInUse maps the configured (first) endpoint to the one of the
// group now in use; any other name is returned as it is.
func (p *Peer) endpointInUse(hostport string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	eps := p.cfg.Endpoints
	if len(eps) < 2 || hostport != p.cfg.Endpoint {
		return hostport
	}
	i := int(p.fo.index.Load())
	if i < 0 || i >= len(eps) {
		i = 0
	}
	return eps[i]
}

// standbyEndpoints lists the configured endpoints not in use, in the order
// they would be tried.
func (p *Peer) standbyEndpoints() []string {
	p.mu.Lock()
	eps := slices.Clone(p.cfg.Endpoints)
	p.mu.Unlock()
	if len(eps) < 2 {
		return nil
	}
	i := int(p.fo.index.Load()) % len(eps)
	return append(eps[i+1:], eps[:i]...)
}

// runFailover checks every peer's silence for failover and looks DNS
// endpoints up again. It runs apart from the session timers because it is
// transport business: which address to send to.
//
// It wakes every failoverTick while some peer watches a gateway group, once
// a second while some peer has failover_after (the packet path stamps the
// silence clock without waking it), at the next periodic lookup when only
// DNS names are configured, and not at all otherwise: an idle tunnel of
// address-literal peers has no timer of any kind (the session timers are
// scheduled by deadline, schedule.go). A reload wakes it to re-plan.
func (d *Device) runFailover() {
	t := time.NewTimer(failoverTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-d.failoverKick:
		case <-d.closed:
			return
		}
		now := d.now()
		d.checkFailover(now)
		t.Stop()
		if wait, ok := d.failoverInterval(now); ok {
			t.Reset(wait)
		}
	}
}

// failoverTick is how often silence is checked while a group is watched:
// a small part of any sensible failover_after.
const failoverTick = 50 * time.Millisecond

// failoverInterval is how long runFailover may sleep; ok is false when
// nothing needs it before the next reload.
func (d *Device) failoverInterval(now time.Time) (wait time.Duration, ok bool) {
	for _, p := range d.peers.Load().list {
		p.mu.Lock()
		after, eps, named := p.cfg.FailoverAfter, p.cfg.Endpoints, hasName(&p.cfg)
		p.mu.Unlock()
		switch {
		case after > 0 && len(eps) > 1:
			return failoverTick, true
		case after > 0 && len(eps) > 0:
			wait, ok = time.Second, true
		case named:
			next := p.fo.lookupDue(now)
			if !ok || next < wait {
				wait, ok = max(next, time.Second), true
			}
		}
	}
	return wait, ok
}

// hasName reports whether an endpoint of c is a DNS name, not an address
// (Endpoints, or Endpoint alone for peers from the directory).
func hasName(c *conf.Peer) bool {
	isName := func(e string) bool {
		_, err := netip.ParseAddrPort(e)
		return e != "" && err != nil
	}
	return isName(c.Endpoint) || slices.ContainsFunc(c.Endpoints, isName)
}

// checkFailover moves every peer whose endpoint has been silent for its
// failover_after to the next endpoint of its group, and re-resolves DNS
// endpoints every ReresolveInterval.
func (d *Device) checkFailover(now time.Time) {
	for _, p := range d.peers.Load().list {
		p.mu.Lock()
		after, n, named := p.cfg.FailoverAfter, len(p.cfg.Endpoints), hasName(&p.cfg)
		p.mu.Unlock()
		if after > 0 && n > 0 {
			if from := p.fo.silentFrom.Load(); from != 0 && p.fo.since(from, now) >= after {
				p.failOver(now)
				continue
			}
		}
		if named && p.fo.lookupDue(now) <= 0 {
			p.reresolve(true)
		}
	}
}

// failOver moves the peer to the next endpoint of its group (wrapping; with
// one endpoint, the same one looked up again) and starts a handshake at
// once. The session core resumes with the ticket it holds, if any, so a
// gateway of the same group takes the peer over in one round trip.
func (p *Peer) failOver(now time.Time) {
	if !p.enter() {
		return
	}
	defer p.leave()
	p.mu.Lock()
	eps := p.cfg.Endpoints
	if len(eps) == 0 {
		p.mu.Unlock()
		return
	}
	from := eps[int(p.fo.index.Load())%len(eps)]
	next := (int(p.fo.index.Load()) + 1) % len(eps)
	if len(eps) > 1 {
		// Counted before the move: a lookup that sees the move sees the
		// count too, and so knows to initiate (resolveNamed).
		p.fo.count.Add(1)
	}
	p.fo.index.Store(int32(next))
	to := eps[next]
	p.mu.Unlock()
	// Silence is measured again from now: if the next one is silent too,
	// the peer moves on after another failover_after.
	p.fo.silentFrom.Store(p.fo.at(now))
	if len(eps) > 1 {
		p.d.log.Warn("endpoint silent; failing over", "peer", p.id, "from", from, "to", to)
	}
	if _, err := netip.ParseAddrPort(to); err != nil {
		p.resolveNamed(to, false, true) // the handshake starts when the lookup is done
		return
	}
	p.resolveNamed(to, false, false)
	p.sendInitiation(now)
}

// reresolve looks the endpoint in use up again. onlyIfChanged: move only
// when DNS gives a different address than last time (periodic lookups);
// else always (nothing answers at the address we have).
func (p *Peer) reresolve(onlyIfChanged bool) {
	p.mu.Lock()
	configured := p.cfg.Endpoint
	p.mu.Unlock()
	if configured == "" {
		return
	}
	p.resolveNamed(p.endpointInUse(configured), onlyIfChanged, false)
}
