package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/handshake"
	"stunnel/rekey"
)

// handshakeMessage is a copied handshake datagram waiting for a worker.
type handshakeMessage struct {
	typ  byte
	msg  []byte
	from conn.Endpoint
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
			case handshake.MessageTypeResponse:
				d.handleResponse(m)
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

func (d *Device) handleInitiation(m handshakeMessage) {
	from := m.from.DstToString()
	src := addrPortOf(m.from) // mac1 was checked before queueing (queueHandshake)
	if d.load.UnderLoad(len(d.handshakeQ)) {
		if !d.cookies.CheckMAC2(m.msg, src) {
			reply, err := d.cookies.CreateReply(m.msg, src)
			if err == nil {
				_ = d.bind.Send([][]byte{reply}, m.from)
			}
			return
		}
		if !d.limiter.Allow(src.Addr()) {
			d.drops.add(dropRateLimited, 1)
			return
		}
	}
	idx := d.indices.reserve(nil)
	resp, sess, err := d.responder.ConsumeInitiation(m.msg, idx)
	if err != nil {
		d.indices.release(idx)
		if resp != nil { // an authenticated refusal (cipher mismatch): tell the initiator why
			_ = d.bind.Send([][]byte{resp}, m.from)
		}
		d.initiationFailed(err, from)
		return
	}
	p := d.peers.Load().byID[sess.PeerID]
	if p == nil { // removed by a reload since the lookup
		d.indices.release(idx)
		sess.Zero()
		return
	}
	now := d.now()
	p.mu.Lock()
	ours := p.currentEndpoint()
	if p.initiation != nil && ours != nil && sameEndpoint(ours, m.from) && !rekey.YieldToPeer(d.publicKey, p.publicKey) {
		// Both sides initiated at once and ours wins: the peer will answer
		// ours and drop its own, so both end on one session. (If ours went
		// to another address than theirs came from, ours may never arrive:
		// then we answer theirs instead.)
		p.mu.Unlock()
		d.indices.release(idx)
		sess.Zero()
		return
	}
	p.abandonInitiationLocked()
	p.mu.Unlock()

	// Ready to receive under the new key before the response can arrive:
	// the initiator sends its first packet as soon as it has it.
	if !p.establish(sess, idx, m.from, now) {
		return
	}
	if err := d.bind.Send([][]byte{resp}, m.from); err != nil && !d.isClosed() {
		d.warn.warn("udp-send-"+p.id, "sending handshake response failed", "peer", p.id, "endpoint", from, "err", err)
	}
}

// initiationFailed counts and explains a refused initiation: by the claimed
// peer ID in the refusal list, and on the peer itself when it is one of ours.
func (d *Device) initiationFailed(err error, from string) {
	var reason string
	switch {
	case errors.Is(err, handshake.ErrUnknownPeer):
		reason = "unknown peer id"
	case errors.Is(err, handshake.ErrKeyMismatch):
		reason = "key mismatch: the peer's static key differs from the public_key configured for its id"
	case errors.Is(err, handshake.ErrCipherMismatch):
		reason = err.Error()
	case errors.Is(err, handshake.ErrStaleTimestamp):
		d.drops.add(dropReplayed, 1)
		d.warn.warn("hs-replay", "dropped replayed or stale handshake initiation", "from", from)
		return
	case errors.Is(err, handshake.ErrRateLimited):
		d.drops.add(dropRateLimited, 1)
		return
	default:
		d.drops.add(dropHandshakeFailed, 1)
		d.warn.warn("hs-fail", "handshake initiation failed", "from", from, "err", err)
		return
	}
	d.drops.add(dropHandshakeFailed, 1)
	var pe *handshake.PeerError
	claimed := ""
	if errors.As(err, &pe) {
		claimed = pe.PeerID
	}
	d.refusals.record(claimed, reason, from, d.now())
	if p := d.peers.Load().byID[claimed]; p != nil {
		p.drops.add(dropHandshakeFailed, 1)
		p.setLastError("refused handshake from " + from + ": " + reason)
	}
	d.warn.warn("refused-"+claimed+"-"+reason, "refused handshake", "claimed_peer", claimed, "from", from, "reason", reason)
}

func (d *Device) handleResponse(m handshakeMessage) {
	idx, ok := handshake.PeekResponseReceiver(m.msg) // mac1 checked in queueHandshake
	if !ok {
		d.drops.add(dropMalformed, 1)
		return
	}
	e, ok := d.indices.lookup(idx)
	if !ok || e.initiation == nil {
		d.drops.add(dropUnknownIndex, 1)
		return
	}
	p := e.peer
	now := d.now()
	p.mu.Lock()
	if p.initiation != e.initiation { // superseded meanwhile
		p.mu.Unlock()
		d.drops.add(dropUnknownIndex, 1)
		return
	}
	sess, err := e.initiation.ConsumeResponse(m.msg)
	if err != nil {
		if errors.Is(err, handshake.ErrCipherMismatch) {
			p.abandonInitiationLocked()
		}
		p.lastError = "handshake response from " + m.from.DstToString() + " rejected: " + err.Error()
		p.mu.Unlock()
		p.drops.add(dropHandshakeFailed, 1)
		d.warn.warn("hs-resp-"+p.id, "handshake failed", "peer", p.id, "from", m.from.DstToString(), "err", err)
		return
	}
	p.initiation = nil
	p.mu.Unlock()
	if !p.establish(sess, idx, m.from, now) {
		return
	}
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

// establish makes a finished handshake's session the peer's newest keypair,
// registered under our index idx, and zeroes sess. False if its AEAD could
// not be built (the index is released, the reason shown).
//
// The initiator's session is complete now: it roams to where the response
// came from and stops retrying. The responder's is complete only when the
// initiator's first packet under it arrives (deliver): until then an
// initiation, which an attacker may have replayed, moves nothing.
func (p *Peer) establish(sess *handshake.Session, idx uint32, from conn.Endpoint, now time.Time) bool {
	d := p.d
	defer sess.Zero()
	if !p.enter() { // removed by a reload meanwhile
		d.indices.release(idx)
		return false
	}
	defer p.leave()
	kp, err := d.newKeypair(sess, now)
	if err != nil {
		d.indices.release(idx)
		p.setLastError(err.Error())
		return false
	}
	d.indices.setKeypair(idx, p, kp, sess.Cipher)
	d.indices.releaseKeypairs(p.keypairs.Install(kp))
	if sess.Initiator {
		p.roam(from)
		p.handshakeDone(now, true, sess.Cipher)
	}
	return true
}

// handshakeDone records a completed handshake: for the initiator when the
// response arrives, for the responder when the initiator confirms the key
// with its first packet (deliver), so a lost response is retried.
func (p *Peer) handshakeDone(now time.Time, initiator bool, cipher handshake.Cipher) {
	p.mu.Lock()
	p.timers.HandshakeCompleted(now)
	p.handshakes++
	p.lastHandshake = now
	p.lastError = ""
	p.mu.Unlock()
	role := "responder"
	if initiator {
		role = "initiator"
	}
	p.d.log.Info("handshake complete", "peer", p.id, "role", role, "cipher", cipher.String(),
		"endpoint", p.currentEndpoint().DstToString())
}

func (d *Device) handleCookieReply(m handshakeMessage) {
	for _, p := range d.peers.Load().list {
		ep := p.currentEndpoint()
		if ep == nil || !sameEndpoint(ep, m.from) {
			continue
		}
		if p.cookieGen.ConsumeReply(m.msg) == nil {
			p.cookieReplies.Add(1)
			d.log.Debug("got a cookie: peer is under load", "peer", p.id)
			return
		}
	}
	d.drops.add(dropMalformed, 1)
}

// newKeypair builds the data-plane keypair of a finished handshake.
func (d *Device) newKeypair(s *handshake.Session, now time.Time) (*rekey.Keypair, error) {
	send, err := handshake.NewAEAD(s.Cipher, &s.SendKey)
	if err != nil {
		return nil, fmt.Errorf("cipher %s: %w", s.Cipher, err)
	}
	recv, err := handshake.NewAEAD(s.Cipher, &s.RecvKey)
	if err != nil {
		return nil, fmt.Errorf("cipher %s: %w", s.Cipher, err)
	}
	kp := rekey.NewKeypair(send, recv, &s.SendKey, &s.RecvKey, s.LocalIndex, s.RemoteIndex,
		s.SessionID, now, s.Initiator, *d.policy.Load())
	return kp, nil
}

// wantHandshake asks for keys: the timers decide whether an initiation goes
// out now or one is already under way.
func (p *Peer) wantHandshake() {
	now := p.d.now()
	p.mu.Lock()
	p.timers.WantHandshake(now)
	act := p.timers.Due(now)
	p.mu.Unlock()
	p.act(act, now)
}

// sendInitiation starts (or retries) a handshake toward the peer.
func (p *Peer) sendInitiation(now time.Time) {
	d := p.d
	if !p.enter() {
		return
	}
	defer p.leave()
	ep := p.currentEndpoint()
	p.mu.Lock()
	if ep == nil {
		if p.cfg.Endpoint != "" {
			p.resolveEndpoint(p.cfg.Endpoint) // the retry timer tries again
		} else {
			p.lastError = "no endpoint known: the peer has no endpoint configured and has not contacted us"
		}
		p.mu.Unlock()
		return
	}
	p.abandonInitiationLocked()
	idx := d.indices.reserve(p)
	in, err := handshake.NewInitiation(d.hsConfig, handshake.PeerInfo{PublicKey: p.publicKey, PresharedKey: p.presharedKey}, idx)
	if err != nil {
		d.indices.release(idx)
		p.lastError = "cannot start handshake: " + err.Error()
		p.mu.Unlock()
		return
	}
	if attempt := p.timers.Attempts(); attempt > 0 && p.timers.Handshaking() {
		// The responder stays silent on a refusal it cannot authenticate
		// (it must not help a prober), so silence is all we can report,
		// with its usual causes.
		if p.lastError == "" || strings.HasPrefix(p.lastError, "no answer") {
			p.lastError = fmt.Sprintf("no answer from %s to %d handshake initiations (unreachable, or it does not know our peer id %q or public key)",
				ep.DstToString(), attempt, d.peerID)
		}
		d.warn.warn("hs-retry-"+p.id, "handshake initiation unanswered; retrying", "peer", p.id,
			"endpoint", ep.DstToString(), "attempt", attempt+1)
	}
	msg := in.Message()
	p.cookieGen.AddMACs(msg)
	p.initiation, p.initiationIndex = in, idx
	d.indices.setInitiation(idx, p, in)
	p.timers.HandshakeInitiated(now)
	p.lastInitiation = now
	p.mu.Unlock()
	if err := d.bind.Send([][]byte{msg}, ep); err != nil && !d.isClosed() {
		d.warn.warn("udp-send-"+p.id, "sending handshake initiation failed", "peer", p.id, "endpoint", ep.DstToString(), "err", err)
	}
}
