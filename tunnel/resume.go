package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/session"
)

func kindOf(resumed bool) string {
	if resumed {
		return "resumed"
	}
	return "full"
}

// handleResumption answers a resumed handshake (message 5): the same DoS
// gates as an initiation, then the ticket is opened and the session
// resumed with one fresh ephemeral exchange and no static-key work. A
// refusal is silent on the wire (the initiator falls back to a full
// handshake at its next retry), counted, and logged with its reason.
func (d *Device) handleResumption(m handshakeMessage) {
	if !d.admit(m) {
		return
	}
	from := m.from.DstToString()
	idx := d.indices.reserve(nil)
	// mayResume checks the ticket's peer once more right before the ring
	// spends the ticket: the responder's own check (its LookupPeer) came
	// before the Noise message, and a reload since may have removed the
	// peer or replaced its static or pre-shared key. Refused there, the
	// resumption spends nothing, and is counted and logged as the lookup's
	// refusal of the same is ("peer removed", "peer key changed").
	resp, sess, st, err := d.host.ConsumeResumptionFor(m.msg, idx, d.mayResume)
	if err != nil {
		d.indices.release(idx)
		if resp != nil { // an authenticated refusal (cipher mismatch): tell the initiator why
			_ = d.bind.Send([][]byte{resp}, m.from)
		}
		d.resumptionFailed(err, from, addrPortOf(m.from).Addr())
		return
	}
	// As in handleInitiation: the peer must still be configured, and
	// AcceptResumed refuses a ticket issued to a key, or a session resumed
	// under a pre-shared key, that a reload replaced since mayResume
	// (quietly, as handleInitiation does; the ticket is spent: a reload in
	// the moment between mayResume and the ring's record costs a full
	// handshake, no more).
	p := d.peers.Load().byID[sess.PeerID]
	if p == nil || !p.enter() {
		d.indices.release(idx)
		sess.Zero()
		st.Zero()
		return
	}
	defer p.leave()
	if err := p.sess.AcceptResumed(sess, st, idx, d.now()); err != nil {
		if !errors.Is(err, session.ErrPeerKeyChanged) {
			d.warn.warn("hs-keys-"+p.id, "cannot use the resumed session's keys", "peer", p.id, "err", err)
		}
		return
	}
	if err := d.bind.Send([][]byte{resp}, m.from); err != nil && !d.isClosed() {
		d.warn.warn("udp-send-"+p.id, "sending resumption response failed", "peer", p.id, "endpoint", from, "err", err)
	}
}

// mayResume is handleResumption's check of an opened, authenticated ticket
// before the ring spends it: the peer it names is configured now, with the
// static and pre-shared keys it was issued under (session.Peer.MayResume,
// the check AcceptResumed repeats). The errors classify as the responder's
// lookup's do (resumptionReason).
func (d *Device) mayResume(st *handshake.TicketState) error {
	p := d.peers.Load().byID[st.PeerID]
	if p == nil {
		return fmt.Errorf("%w (removed since the ticket was issued)", handshake.ErrUnknownPeer)
	}
	return p.sess.MayResume(st)
}

// resumptionReason names a refused resumption for counters and logs.
func resumptionReason(err error) string {
	switch {
	case errors.Is(err, handshake.ErrTicketExpired):
		return "ticket expired"
	case errors.Is(err, handshake.ErrTicketKeyUnknown):
		return "ticket key unknown"
	case errors.Is(err, handshake.ErrTicketInvalid):
		return "ticket invalid"
	case errors.Is(err, handshake.ErrTicketReused):
		return "ticket reused"
	case errors.Is(err, handshake.ErrReauthRequired):
		return "reauth required"
	case errors.Is(err, handshake.ErrUnknownPeer):
		return "peer removed"
	case errors.Is(err, handshake.ErrKeyMismatch):
		return "peer key changed"
	case errors.Is(err, handshake.ErrStaleTimestamp):
		return "replayed"
	case errors.Is(err, handshake.ErrCipherMismatch):
		return "cipher mismatch"
	case errors.Is(err, handshake.ErrRateLimited):
		return "rate limited"
	case errors.Is(err, handshake.ErrDecrypt):
		return "does not authenticate"
	}
	return "malformed"
}

// resumptionFailed counts and logs a refused resumption. src is the
// datagram's source address (from, parsed), which keys the warning's rate
// limit: a message 5 that refuses costs its sender only our public key
// (and for some reasons a ticket seen on the wire), so under one key per
// reason a stranger would hold each reason's line for itself.
func (d *Device) resumptionFailed(err error, from string, src netip.Addr) {
	reason := resumptionReason(err)
	d.resumeRefusals.add(reason)
	switch reason {
	case "replayed":
		d.drops.add(dropReplayed, 1)
	case "rate limited":
		// Counted, not logged and not charged to the peer, as a
		// rate-limited initiation is (handleInitiation): a flood's own
		// symptom, not news about the peer.
		d.drops.add(dropRateLimited, 1)
		return
	default:
		d.drops.add(dropHandshakeFailed, 1)
	}
	var pe *handshake.PeerError
	claimed := ""
	if errors.As(err, &pe) {
		claimed = pe.PeerID // from inside an authenticated ticket
		if p := d.peers.Load().byID[claimed]; p != nil {
			p.sess.ResumptionRefused(reason)
		}
	}
	d.warn.warnFrom(src, "resume-"+reason, "refused session resumption; the peer falls back to a full handshake",
		"claimed_peer", claimed, "from", from, "reason", reason)
}

// sendControl seals a session control message (a new ticket) to the peer
// under its current key, like a data packet.
func (p *Peer) sendControl(msg []byte) {
	b := p.d.pool.TryGet()
	if b == nil || len(msg) > len(b)-headerLen-tagLen {
		if b != nil {
			p.d.pool.Put(b)
		}
		return // out of buffers: the ticket waits for the next handshake
	}
	n := copy(b[headerLen:], msg)
	p.send([][]byte{b[:headerLen+n]})
}

// controlReceived hands a control message that arrived under kp to the
// session core (a new ticket); one that does not parse is counted as
// malformed. A stale ticket (for a session that is no longer ours to
// resume: two handshakes crossed) is no error: the core discards it.
func (p *Peer) controlReceived(plain []byte, kp *rekey.Keypair) {
	if err := p.sess.ReceiveControl(plain, kp, p.d.now()); err != nil {
		p.drops.add(dropMalformed, 1)
		p.d.warn.warn("ctl-"+p.id, "dropped a session control message", "peer", p.id, "err", err)
	}
}

// reasonCounts counts events by a reason from a small fixed set (the
// strings of resumptionReason), so its map stays bounded.
type reasonCounts struct {
	mu sync.Mutex
	m  map[string]uint64 // guarded by mu
}

func (c *reasonCounts) add(reason string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]uint64)
	}
	c.m[reason]++
	c.mu.Unlock()
}

func (c *reasonCounts) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}
