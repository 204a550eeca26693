package tunnel

import (
	"encoding/hex"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/conf"
	"stunnel/rekey"
	"stunnel/session"
	"stunnel/tunnel/allowedips"
)

// pendingQueueLen bounds the packets one peer holds while it has no key.
const pendingQueueLen = 128

// Peer is one configured remote host, as the data plane sees it: where to
// send (endpoint, roaming), what waits for a key, counters and the in-order
// queues of its batches. Its sessions (handshakes, keys over time, timers)
// are the session core's: sess.
type Peer struct {
	d     *Device
	id    string
	sess  *session.Peer // safe for concurrent use; see package session for its locks
	timer peerTimer     // its place in the device's timer schedule (schedule.go)

	// Lifetime: stopped is set once by stop; active counts work admitted by
	// enter and not yet left. resolving is true while a lookup runs.
	stopped   atomic.Bool
	active    atomic.Int32
	resolving atomic.Bool

	// endpoint is where we send: from the config, then wherever the peer's
	// authenticated packets last came from (roaming). Written by handshake
	// and receive goroutines, only through storeEndpoint (under
	// d.endpoints.mu, which lists the peer by it); read without a lock.
	endpoint atomic.Pointer[conn.Endpoint]
	// The peer's place in d.endpoints (endpointindex.go), guarded by
	// d.endpoints.mu: listed under atKey, the next peer at that address.
	atKey    netip.AddrPort
	atListed bool
	atNext   *Peer
	// fo is the endpoint group: which configured endpoint is in use, the
	// silence that moves to the next one, failovers (failover.go).
	fo failover

	// mu guards cfg and pending. Lock order: p.mu before sess's locks; never
	// held while sealing, opening or doing handshake crypto.
	mu      sync.Mutex
	cfg     conf.Peer    // as configured; endpoint/allowed_ips/keepalive may change on reload
	pending *rekey.Queue // packets waiting for a key; each is a pool buffer holding header+plaintext

	rxBytes, txBytes, rxPackets, txPackets atomic.Uint64
	drops                                  dropCounters

	// outInFlight and inInFlight count the peer's batches between dispatch
	// and the end of their in-order stage. At zero, the dispatching reader
	// may run the whole stage itself (dispatchOut, dispatchIn) without
	// breaking the peer's order.
	outInFlight, inInFlight atomic.Int32
	// Scratch space of the inline paths, used only by the goroutine that
	// won the in-flight counter's 0 -> 1 (a nonce on the stack would escape
	// through the AEAD interface: one allocation per packet batch).
	inlineSealNonce [12]byte // outInFlight's winner
	inlineOpenNonce [12]byte // inInFlight's winner
	deliverScratch  [][]byte // inInFlight's winner

	sendQueue chan *outBatch // batches in nonce order, to the sender goroutine
	recvQueue chan *inBatch  // batches in arrival order, to the receiver goroutine
	stopping  chan struct{}
	wg        sync.WaitGroup
}

func (d *Device) newPeer(pc conf.Peer) *Peer {
	p := &Peer{
		d:         d,
		id:        pc.ID,
		cfg:       pc,
		pending:   rekey.NewQueue(pendingQueueLen),
		sendQueue: make(chan *outBatch, batchQueueLen),
		recvQueue: make(chan *inBatch, batchQueueLen),
		stopping:  make(chan struct{}),
	}
	p.fo.epoch = d.epoch
	p.sess = d.host.NewPeer(session.PeerConfig{
		ID:                  pc.ID,
		PublicKey:           pc.PublicKey,
		PresharedKey:        pc.PresharedKey,
		PersistentKeepalive: pc.PersistentKeepalive,
	}, peerIndices{d.indices, p})
	p.resolveEndpoint(pc.Endpoint)
	return p
}

// resolveEndpoint points the peer at its configured endpoint (the one of
// its group in use, see endpointInUse): a literal address at once, a DNS
// name by a lookup in the background, since DNS can take seconds and must
// never hold up the packet path or a lock it needs. One lookup at a time;
// a failure is shown and retried when the handshake retries.
func (p *Peer) resolveEndpoint(hostport string) {
	if hostport == "" {
		return
	}
	p.resolveNamed(p.endpointInUse(hostport), false, false)
}

// resolveNamed resolves hostport and sends there. onlyIfChanged: only when
// the lookup gives another address than the last lookup of that name did
// (a periodic lookup must not undo roaming). initiate: a handshake starts
// once a background lookup is done (a failover to a DNS name).
func (p *Peer) resolveNamed(hostport string, onlyIfChanged, initiate bool) {
	d := p.d
	p.fo.lastLookup.Store(p.fo.at(d.now()))
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		p.resolved(hostport, ap, onlyIfChanged)
		return
	}
	if d.isClosed() || !p.resolving.CompareAndSwap(false, true) {
		return
	}
	d.background.Add(1)
	go func() {
		defer d.background.Done()
		for {
			failovers := p.fo.count.Load()
			p.lookUp(hostport, onlyIfChanged, initiate)
			p.resolving.Store(false)
			// A failover to a name while we looked up found us busy and
			// dropped its own lookup, and the answer we got was refused:
			// the group had moved on. Look up the endpoint in use now (a
			// literal one needs no lookup), and initiate as the failover
			// would have.
			p.mu.Lock()
			configured := p.cfg.Endpoint
			p.mu.Unlock()
			next := p.endpointInUse(configured)
			if _, err := netip.ParseAddrPort(next); configured == "" || next == hostport || err == nil ||
				d.isClosed() || !p.resolving.CompareAndSwap(false, true) {
				return
			}
			p.fo.lastLookup.Store(p.fo.at(d.now()))
			hostport, onlyIfChanged, initiate = next, false, p.fo.count.Load() != failovers
		}
	}()
}

// lookUp is one background lookup of resolveNamed.
func (p *Peer) lookUp(hostport string, onlyIfChanged, initiate bool) {
	d := p.d
	ap, err := d.resolve(d.ctx, hostport)
	if err == nil {
		if p.resolved(hostport, ap, onlyIfChanged) && initiate {
			p.sendInitiation(d.now())
		}
		return
	}
	if d.isClosed() {
		return
	}
	p.sess.SetProblem(session.Problem{Reason: session.ReasonResolve, Endpoint: hostport, Detail: err.Error(), At: d.now()})
	d.warn.warn("resolve-"+p.id, "cannot resolve endpoint; will retry", "peer", p.id, "endpoint", hostport, "err", err)
}

// resolved takes a lookup's answer, unless the group moved on to another
// endpoint meanwhile or (onlyIfChanged) DNS gave the same address again.
// It reports whether the peer now sends to ap.
func (p *Peer) resolved(hostport string, ap netip.AddrPort, onlyIfChanged bool) bool {
	p.mu.Lock()
	configured := p.cfg.Endpoint
	p.mu.Unlock()
	if configured == "" || p.endpointInUse(configured) != hostport {
		return false // reloaded or failed over while we looked it up
	}
	prev := p.fo.resolved.Swap(&resolvedName{name: hostport, addr: ap})
	if onlyIfChanged && prev != nil && prev.name == hostport && prev.addr == ap {
		return false
	}
	if onlyIfChanged && prev != nil && prev.name == hostport {
		p.d.log.Info("endpoint moved in DNS", "peer", p.id, "endpoint", hostport, "from", prev.addr.String(), "to", ap.String())
	}
	p.setEndpoint(ap)
	return true
}

func (p *Peer) setEndpoint(ap netip.AddrPort) {
	ep, err := p.d.bind.ParseEndpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
	if err != nil {
		p.d.warn.warn("endpoint-"+p.id, "unusable endpoint", "peer", p.id, "endpoint", ap.String(), "err", err)
		return
	}
	p.storeEndpoint(ep)
}

// enter admits work that would leave something with the peer (a queued
// batch, a pending packet, a new session); false once the peer is stopping.
// Every true is matched by leave. stop waits for the admitted work to end,
// so nothing reaches a peer after its queues were drained.
func (p *Peer) enter() bool {
	p.active.Add(1)
	if p.stopped.Load() {
		p.active.Add(-1)
		return false
	}
	return true
}

func (p *Peer) leave() { p.active.Add(-1) }

func (p *Peer) currentEndpoint() conn.Endpoint {
	if ep := p.endpoint.Load(); ep != nil {
		return *ep
	}
	return nil
}

// start launches the peer's in-order sender and receiver.
func (p *Peer) start() {
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.runSender() }()
	go func() { defer p.wg.Done(); p.runReceiver() }()
}

// stop ends the peer's goroutines; batches still queued are released. The
// crypto workers must still run: admitted work may wait for them.
func (p *Peer) stop() {
	p.stopped.Store(true)
	for p.active.Load() != 0 { // admitted senders finish within a batch's time
		time.Sleep(50 * time.Microsecond)
	}
	close(p.stopping)
	p.wg.Wait()
	for {
		select {
		case b := <-p.sendQueue:
			b.done.Lock() // a worker may still hold it
			b.done.Unlock()
			p.d.releaseOut(b)
			p.outInFlight.Add(-1)
		case b := <-p.recvQueue:
			b.done.Lock()
			b.done.Unlock()
			p.d.releaseIn(b)
			p.inInFlight.Add(-1)
		default:
			return
		}
	}
}

// clearSessions zeroes every key, abandons the handshake in progress and
// drops what waited for a key.
func (p *Peer) clearSessions() {
	p.sess.Clear()
	p.mu.Lock()
	p.pending.Drain(func(pkt []byte) { p.d.pool.Put(bufferOf(pkt)) })
	p.mu.Unlock()
	p.d.indices.releasePeer(p)
}

// status reports the peer for `stunnel show`.
func (p *Peer) status(now time.Time) PeerStatus {
	st := p.sess.Status(now)
	s := PeerStatus{
		ID:            p.id,
		PublicKey:     p.sess.PublicKey().String(),
		RxBytes:       p.rxBytes.Load(),
		TxBytes:       p.txBytes.Load(),
		RxPackets:     p.rxPackets.Load(),
		TxPackets:     p.txPackets.Load(),
		Drops:         p.drops.snapshot(),
		Handshakes:    st.Handshakes,
		LastError:     st.Problem.String(),
		CookieReplies: st.CookieReplies,

		HandshakesResumed:  st.HandshakesResumed,
		ResumptionsRefused: st.ResumptionsRefused,
		Restored:           st.Restored,
	}
	if st.Ticket != nil {
		s.Ticket = &TicketStatus{Received: st.Ticket.Received, Expires: st.Ticket.Expires}
	}
	if ep := p.currentEndpoint(); ep != nil {
		s.Endpoint = ep.DstToString()
	}
	s.StandbyEndpoints = p.standbyEndpoints()
	s.Failovers = p.fo.count.Load()
	if kp := st.Current; kp != nil {
		s.SessionID = hex.EncodeToString(kp.SessionID[:])
		if e, ok := p.d.indices.lookup(kp.LocalIndex); ok {
			s.Cipher = e.cipher.String()
		}
	}
	if !st.LastHandshake.IsZero() {
		t := st.LastHandshake
		s.LastHandshake = &t
	}
	p.mu.Lock()
	for _, pfx := range p.cfg.AllowedIPs {
		s.AllowedIPs = append(s.AllowedIPs, pfx.String())
	}
	p.mu.Unlock()
	return s
}

// buildPeerSet makes the peer set of a configuration, reusing the running
// Peer of every peer whose identity (ID, public key, pre-shared key) did not
// change, so its sessions survive a reload untouched.
func (d *Device) buildPeerSet(cfg *conf.Config, old *peerSet) *peerSet {
	policy := d.host.Policy()
	set := &peerSet{byID: make(map[string]*Peer, len(cfg.Peers)), routes: new(allowedips.Table[*Peer])}
	for _, pc := range cfg.Peers {
		var p *Peer
		if old != nil {
			if q := old.byID[pc.ID]; q != nil && q.sess.HasKeys(pc.PublicKey, &pc.PresharedKey) {
				p = q
				p.mu.Lock()
				endpointChanged := p.cfg.Endpoint != pc.Endpoint || !slices.Equal(p.cfg.Endpoints, pc.Endpoints)
				if endpointChanged {
					// A new group starts at its first endpoint, with nothing
					// sent to it yet: silence toward the old endpoint must
					// not count against it (the clock starts at the next
					// send, as after an answer), or it could be left before
					// a packet reached it.
					p.fo.index.Store(0)
					p.fo.silentFrom.Store(0)
				}
				p.cfg = pc
				p.mu.Unlock()
				p.sess.SetPolicy(policy, pc.PersistentKeepalive, d.now())
				p.rearm() // a shorter keepalive moves the deadline earlier
				if endpointChanged {
					p.resolveEndpoint(pc.Endpoint)
				}
			}
		}
		if p == nil {
			p = d.newPeer(pc)
		}
		set.list = append(set.list, p)
		set.byID[pc.ID] = p
		for _, pfx := range pc.AllowedIPs {
			set.routes.Insert(pfx, p)
		}
	}
	return set
}

// Status is the interface's state for `stunnel show`.
func (d *Device) Status() Status {
	now := d.now()
	set := d.peers.Load()
	st := Status{
		Name:       d.name,
		PeerID:     d.peerID,
		PublicKey:  d.host.PublicKey().String(),
		ListenPort: int(d.port),
		Peers:      make([]PeerStatus, 0, len(set.list)),
		Drops:      d.drops.snapshot(),
		Refusals:   d.refusals.snapshot(),
		StaticKey:  d.staticKeyStatus(),
	}
	for _, p := range set.list {
		st.Peers = append(st.Peers, p.status(now))
	}
	st.ResumptionsRefused = d.resumeRefusals.snapshot()
	if d.ticketRing != nil {
		for _, k := range d.ticketRing.Keys() {
			st.TicketKeys = append(st.TicketKeys, TicketKeyStatus{Name: k.Name, State: k.State.String(), EncryptUntil: k.EncryptUntil, End: k.End})
		}
	}
	return st
}

// allowedSource reports whether the peer may send from src.
func (set *peerSet) allowedSource(p *Peer, src netip.Addr) bool {
	q, ok := set.routes.Lookup(src)
	return ok && q == p
}

// Routes lists every allowed_ips prefix of a configuration, for the routes
// the daemon installs on the TUN device.
func Routes(cfg *conf.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, pc := range cfg.Peers {
		out = append(out, pc.AllowedIPs...)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return slices.Compact(out)
}
