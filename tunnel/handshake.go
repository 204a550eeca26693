package tunnel

import (
	"errors"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/handshake"
	"stunnel/session"
)

// handshakeMessage is a copied handshake datagram waiting for a worker.
type handshakeMessage struct {
	typ  byte
	msg  []byte
	from conn.Endpoint
	peer *Peer // a cookie reply: the peer that took it at the intake (msg is nil)
	// admitted: an initiation that passed the load gates at the intake
	// (mac2 proven, token taken), so admit lets it through unchecked and
	// uncharged; see "Who charges the token buckets" in hsqueue.go.
	admitted bool
}

// handshakeWorker serves the handshake queue: cheap MAC checks first, the
// cookie dance and per-source rate limit under load, public-key work last.
func (d *Device) handshakeWorker() {
	for {
		select {
		case m := <-d.handshakeQ:
			switch m.typ {
			case handshake.MessageTypeInitiation:
				d.handleInitiation(m)
			case handshake.MessageTypeResponse, handshake.MessageTypeResumptionResponse:
				d.handleResponse(m)
			case handshake.MessageTypeResumptionInitiation:
				d.handleResumption(m)
			case handshake.MessageTypeCookieReply:
				d.handleCookieReply(m)
			default:
				d.drops.add(dropMalformed, 1)
			}
		case <-d.closed:
			return
		}
	}
}

// addrPorter is an endpoint that knows its address without formatting it
// (udpbind.Endpoint); the fallbacks cover wireguard-go's conn package.
type addrPorter interface{ AddrPort() netip.AddrPort }

// addrPortOf is the remote address of an endpoint, without allocating for the
// endpoint types we use.
func addrPortOf(ep conn.Endpoint) netip.AddrPort {
	switch e := ep.(type) {
	case addrPorter:
		return e.AddrPort()
	case *conn.StdNetEndpoint:
		return e.AddrPort
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return ap
}

// admit runs the DoS gates in front of the responder's public-key work: under
// load, a message without a valid mac2 gets a cookie reply instead, and
// the per-source token bucket decides. A message the intake admitted has
// passed them already, its token paid as it arrived: charged again here,
// where the queue may deliver a source's messages in a bunch, it would pay
// twice and a source within its rate could be refused. False: stop here.
func (d *Device) admit(m handshakeMessage) bool {
	if m.admitted {
		return true
	}
	src := addrPortOf(m.from) // mac1 was checked before queueing (queueHandshake)
	if !d.load.UnderLoad(len(d.handshakeQ)) {
		return true
	}
	if !d.cookies.CheckMAC2(m.msg, src) {
		if !d.sendCookieWithin(m.msg, src, m.from) {
			d.drops.add(dropRateLimited, 1)
		}
		return false
	}
	// Arrived before the load came on, so the intake did not charge it:
	// this is its one charge.
	if !d.limiter.Allow(src.Addr()) {
		d.drops.add(dropRateLimited, 1)
		return false
	}
	return true
}

func (d *Device) handleInitiation(m handshakeMessage) {
	from := m.from.DstToString()
	if !d.admit(m) {
		return
	}
	idx := d.indices.reserve(nil)
	resp, sess, err := d.host.ConsumeInitiation(m.msg, idx)
	if err != nil {
		d.indices.release(idx)
		if resp != nil { // an authenticated refusal (cipher mismatch): tell the initiator why
			_ = d.bind.Send([][]byte{resp}, m.from)
		}
		d.initiationFailed(err, from, addrPortOf(m.from).Addr())
		return
	}
	// The peer as it is now: a reload since the lookup may have removed it,
	// or replaced its public or pre-shared key. A key taken out of the
	// config must not get in as the peer that replaced it: Accept refuses
	// a session made under it (ErrPeerKeyChanged, ErrPeerPSKChanged).
	p := d.peers.Load().byID[sess.PeerID]
	if p == nil || !p.enter() {
		d.indices.release(idx)
		sess.Zero()
		return
	}
	defer p.leave()
	// Ready to receive under the new key before the response can arrive:
	// the initiator sends its first packet as soon as it has it. Every
	// valid initiation is answered, also when ours is pending (Accept).
	if err := p.sess.Accept(sess, idx, d.now()); err != nil {
		if !errors.Is(err, session.ErrPeerKeyChanged) {
			d.warn.warn("hs-keys-"+p.id, "cannot use the new session's keys", "peer", p.id, "err", err)
		}
		// A replaced key is let go unanswered and uncounted, as a removed
		// peer is above: the race with the reload lasts one handshake, and
		// the initiator's retry meets the new key at the lookup, where a
		// key mismatch is counted and logged (initiationFailed). A retry
		// under the old pre-shared key is answered under the new one,
		// which the initiator cannot open until it has it too.
		return
	}
	if err := d.bind.Send([][]byte{resp}, m.from); err != nil && !d.isClosed() {
		d.warn.warn("udp-send-"+p.id, "sending handshake response failed", "peer", p.id, "endpoint", from, "err", err)
	}
}

// initiationFailed counts and explains a refused initiation: by the claimed
// peer ID in the refusal list, and on the peer itself when it is one of ours.
// src is the datagram's source address (from, parsed), which keys the
// warning's rate limit.
func (d *Device) initiationFailed(err error, from string, src netip.Addr) {
	var reason string
	switch {
	case errors.Is(err, handshake.ErrUnknownPeer):
		reason = "unknown peer id"
	case errors.Is(err, handshake.ErrKeyMismatch):
		reason = "key mismatch: the peer's static key differs from the public_key configured for its id"
	case errors.Is(err, handshake.ErrCipherMismatch):
		// Both sides' choices, without the *PeerError's `peer "ID": `
		// in front: the ID is the refusal's own field, and the reason's
		// text up to its first ':' is the metrics' reason label.
		reason = err.Error()
		if pe := (*handshake.PeerError)(nil); errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
	case errors.Is(err, handshake.ErrStaleTimestamp):
		// Keyed by source, as every warning a datagram causes
		// (rateLimitedLog): anyone who captured one initiation can
		// replay it, and anyone who knows our public key can make one
		// that does not decrypt, every interval, and under one fixed
		// key they would keep that line for themselves and fold every
		// other source's into their count.
		d.drops.add(dropReplayed, 1)
		d.warn.warnFrom(src, "hs-replay", "dropped replayed or stale handshake initiation", "from", from)
		return
	case errors.Is(err, handshake.ErrRateLimited):
		d.drops.add(dropRateLimited, 1)
		return
	default:
		d.drops.add(dropHandshakeFailed, 1)
		d.warn.warnFrom(src, "hs-fail", "handshake initiation failed", "from", from, "err", err)
		return
	}
	d.drops.add(dropHandshakeFailed, 1)
	var pe *handshake.PeerError
	claimed := ""
	if errors.As(err, &pe) {
		claimed = pe.PeerID
	}
	d.refusals.record(claimed, reason, from, d.now())
	// An unknown ID or a wrong key is an unauthenticated claim (anyone may
	// send it): counted on the peer, never written into its last_error; the
	// refusal list carries it.
	if p := d.peers.Load().byID[claimed]; p != nil {
		p.drops.add(dropHandshakeFailed, 1)
		if errors.Is(err, handshake.ErrCipherMismatch) { // decided after the peer proved its key
			p.sess.SetProblem(session.Problem{Reason: session.ReasonWeRefused, Endpoint: from, Detail: reason, At: d.now()})
		}
	}
	// Keyed by source and reason, not by the claimed ID: anyone who knows
	// our public key can make an initiation that claims any ID, and keyed
	// by it, one stranger rotating IDs would keep every bucket of the
	// limiter busy and so silence every other warning (a real peer's
	// bad mac1, a send failure). From one source (IPv6: one /64), this
	// logs one line per reason per interval, with the count it swallowed.
	d.warn.warnFrom(src, "refused-"+reason, "refused handshake", "claimed_peer", claimed, "from", from, "reason", reason)
}

func (d *Device) handleResponse(m handshakeMessage) {
	idx, ok := handshake.PeekResponseReceiver(m.msg) // mac1 checked in queueHandshake
	if m.typ == handshake.MessageTypeResumptionResponse {
		idx, ok = handshake.PeekResumptionResponseReceiver(m.msg)
	}
	if !ok {
		d.drops.add(dropMalformed, 1)
		return
	}
	// Checked again here: the index may have changed hands since the intake.
	e, ok := d.indices.lookup(idx)
	if !ok || !e.awaitsResponse() {
		d.drops.add(dropUnknownIndex, 1)
		return
	}
	p := e.peer
	if !p.enter() { // removed by a reload meanwhile
		return
	}
	defer p.leave()
	done, err := p.sess.ConsumeResponse(idx, m.msg, m.from.DstToString(), d.now())
	switch {
	case errors.Is(err, session.ErrNotPending):
		d.drops.add(dropUnknownIndex, 1)
		return
	case err != nil:
		p.drops.add(dropHandshakeFailed, 1)
		d.warn.warn("hs-resp-"+p.id, "handshake response rejected", "peer", p.id, "from", m.from.DstToString(), "err", err)
		return
	}
	p.roam(m.from)
	if done.Yielded { // the peer's confirmation of its session completes it (deliver)
		d.log.Debug("both sides initiated at once: using the peer's session", "peer", p.id)
		return
	}
	d.log.Info("handshake complete", "peer", p.id, "role", "initiator", "kind", kindOf(done.Resumed),
		"cipher", done.Cipher.String(), "endpoint", m.from.DstToString())
	// The initiator confirms the new key at once: queued packets if any,
	// else a keepalive, so the responder promotes it and may send with it.
	p.mu.Lock()
	queued := p.pending.Len()
	p.mu.Unlock()
	if queued > 0 {
		p.flushPending()
	} else {
		p.sendKeepalive()
	}
}

// handleCookieReply follows up a cookie the intake took (takeCookie).
func (d *Device) handleCookieReply(m handshakeMessage) {
	p := m.peer
	d.log.Debug("got a cookie: peer is under load; initiating again with it", "peer", p.id)
	// Retry at once with mac2 instead of a whole retry interval later:
	// under a flood, that interval is what kept a real peer out. A
	// resumption answered so is retried as one, with the same ticket,
	// which the loaded responder did not open (session.Peer.
	// ConsumeCookieReply): a full handshake would cost it several times
	// more. A peer removed meanwhile sends nothing (sendInitiation).
	p.sendInitiation(d.now())
}

// wantHandshake asks for keys: the timers decide whether an initiation goes
// out now or one is already under way.
func (p *Peer) wantHandshake() {
	now := p.d.now()
	p.act(p.sess.WantHandshake(now), now)
}

// sendInitiation starts (or retries) a handshake toward the peer.
func (p *Peer) sendInitiation(now time.Time) {
	d := p.d
	if !p.enter() {
		return
	}
	defer p.leave()
	ep := p.currentEndpoint()
	if ep == nil {
		p.mu.Lock()
		configured := p.cfg.Endpoint
		p.mu.Unlock()
		if configured != "" {
			p.resolveEndpoint(configured) // the retry timer tries again
		} else {
			p.sess.SetProblem(session.Problem{Reason: session.ReasonNoEndpoint, At: now})
		}
		return
	}
	msg, attempt, err := p.sess.Initiate(now, ep.DstToString())
	if err != nil {
		d.warn.warn("hs-start-"+p.id, "cannot start handshake", "peer", p.id, "err", err)
		return
	}
	if attempt == 1 {
		p.reresolve(false) // the first unanswered retry: the peer may have moved under its name
	}
	if attempt > 0 {
		d.warn.warn("hs-retry-"+p.id, "handshake initiation unanswered; retrying", "peer", p.id,
			"endpoint", ep.DstToString(), "attempt", attempt+1)
	}
	p.fo.sent(now) // an unanswered initiation is silence too (failover_after)
	if err := d.bind.Send([][]byte{msg}, ep); err != nil && !d.isClosed() {
		d.warn.warn("udp-send-"+p.id, "sending handshake initiation failed", "peer", p.id, "endpoint", ep.DstToString(), "err", err)
	}
}
