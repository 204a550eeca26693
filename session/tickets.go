package session

import (
	"bytes"
	"crypto/subtle"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// TicketIssuer is the responder's ticket-key ring (tickets.Ring): it opens
// and consumes tickets in resumptions and issues new ones.
type TicketIssuer interface {
	handshake.TicketOpener
	// Issue seals a ticket for a session we just completed as responder
	// (responder: our static public key, which the ticket must name) and
	// returns the new-ticket control message to send under it.
	Issue(sess *handshake.Session, responder, peerStatic handshake.PublicKey, authTime time.Time) ([]byte, error)
}

// ticketPolicy is the Host's ticket configuration, replaced whole.
type ticketPolicy struct {
	issuer      TicketIssuer  // nil: we issue no tickets and refuse resumptions
	use         bool          // we resume with tickets the peers gave us
	reauthAfter time.Duration // a full handshake at least this often (0: never forced)
}

// SetTickets configures session resumption: issuer (nil: none) issues and
// opens tickets as responder; use says whether this side resumes with
// tickets it holds; a full handshake is forced when the last one is
// reauthAfter old.
func (h *Host) SetTickets(issuer TicketIssuer, use bool, reauthAfter time.Duration) {
	h.tickets.Store(&ticketPolicy{issuer: issuer, use: use, reauthAfter: reauthAfter})
}

func (h *Host) ticketPolicy() *ticketPolicy {
	if t := h.tickets.Load(); t != nil {
		return t
	}
	return &ticketPolicy{}
}

// ConsumeResumption authenticates a resumed handshake (message 5) and
// answers it (message 6), after the holder's DoS gates. On success the
// holder hands sess and st to the named Peer's AcceptResumed.
func (h *Host) ConsumeResumption(msg []byte, localIndex uint32) ([]byte, *handshake.Session, *handshake.TicketState, error) {
	return h.ConsumeResumptionFor(msg, localIndex, nil)
}

// ConsumeResumptionFor is ConsumeResumption with the holder's own check of
// the opened ticket (nil: none), run once message 5 has authenticated
// (ticket, peer, Noise message, timestamp) and before the ticket is
// recorded as used. A holder that may refuse the resumption afterwards (a
// securesession bound to another peer) refuses it here instead: a
// resumption steered to where it is refused must not spend the ticket its
// owner still needs. The one-use record stays the last step, atomic in the
// ring, so no check here lets a ticket be taken twice.
func (h *Host) ConsumeResumptionFor(msg []byte, localIndex uint32, check func(*handshake.TicketState) error) ([]byte, *handshake.Session, *handshake.TicketState, error) {
	issuer := h.ticketPolicy().issuer
	switch {
	case issuer == nil:
		return h.responder.ConsumeResumption(msg, localIndex, nil)
	case check != nil:
		return h.responder.ConsumeResumption(msg, localIndex, checkedOpener{issuer, check})
	}
	return h.responder.ConsumeResumption(msg, localIndex, issuer)
}

// checkedOpener runs a holder's check before the ring spends a ticket.
type checkedOpener struct {
	handshake.TicketOpener
	check func(*handshake.TicketState) error
}

func (o checkedOpener) ConsumeTicket(ticket []byte, st *handshake.TicketState) error {
	if err := o.check(st); err != nil {
		return err
	}
	return o.TicketOpener.ConsumeTicket(ticket, st)
}

// MayResume reports whether a ticket opened for a resumption was issued to
// this Peer as it is set up: to its static key and, when the ticket names
// one, under its pre-shared key. AcceptResumed refuses the same, with the
// same errors, once the ticket is spent; a holder asks first (in the check
// of Host.ConsumeResumptionFor) so a refusal costs the ticket's owner
// nothing. The holder has found this Peer by st.PeerID.
func (p *Peer) MayResume(st *handshake.TicketState) error {
	if !st.HasPSKTag {
		return p.sameKeys(st.PeerStatic, nil)
	}
	return p.sameKeys(st.PeerStatic, &st.PSKTag)
}

// HasKeys reports whether the Peer was made with this static key and
// pre-shared key: a reload keeps the session of a peer whose keys did not
// change. The pre-shared key is compared through its tag, in constant
// time, so no copy of the Peer's key is made (PresharedKey returns one)
// and the comparison's time does not depend on where two keys differ.
func (p *Peer) HasKeys(static handshake.PublicKey, psk *handshake.PresharedKey) bool {
	tag := psk.Tag()
	return p.sameKeys(static, &tag) == nil
}

// sameKeys reports whether static and the pre-shared key that pskTag names
// (nil: not checked) are this Peer's: accept's check of a finished
// handshake, and MayResume's of a ticket before it is spent. Public keys
// are not secret: a plain comparison. The tags stand for a secret:
// constant time. cfg.PublicKey and pskTag are immutable.
func (p *Peer) sameKeys(static handshake.PublicKey, pskTag *[32]byte) error {
	if static != p.cfg.PublicKey {
		return ErrPeerKeyChanged
	}
	if pskTag != nil && subtle.ConstantTimeCompare(pskTag[:], p.pskTag[:]) != 1 {
		return ErrPeerPSKChanged
	}
	return nil
}

// heldTicket is a ticket a peer gave us (we were the initiator), with the
// resumption secret of the session it came under. Used once, and sent at
// most twice: resent marks the one resend a cookie reply brought
// (resendLocked), after which no cookie reply brings another.
type heldTicket struct {
	ticket   []byte
	secret   [32]byte
	received time.Time
	expires  time.Time
	resent   bool
}

func (t *heldTicket) zero() {
	if t != nil {
		clear(t.secret[:])
	}
}

// pendingHandshake is our handshake in flight: a full initiation or a
// resumption; both answer with a session or an error.
type pendingHandshake interface {
	Message() []byte
	ConsumeResponse(msg []byte) (*handshake.Session, error)
	Zero()
}

// takeTicketLocked returns the ticket our next handshake may resume with,
// or nil for a full handshake, and forgets it: a ticket resumes at most
// once. That is the held ticket, or, when a cookie reply answered our
// pending resumption and no newer ticket came since, the ticket that
// resumption carried (resendLocked). Either obeys the same rules.
func (p *Peer) takeTicketLocked(now time.Time) *heldTicket {
	t := p.held
	p.held = nil
	if p.resend {
		if t == nil {
			t = p.sent
			t.resent = true
		} else {
			p.sent.zero() // the newer ticket is certainly unspent
		}
		p.sent, p.resend = nil, false
	}
	if t == nil {
		return nil
	}
	pol := p.host.ticketPolicy()
	if !pol.use || p.forceFull || !now.Before(t.expires) ||
		pol.reauthAfter > 0 && !p.lastFull.IsZero() && now.Sub(p.lastFull) >= pol.reauthAfter {
		t.zero()
		return nil
	}
	return t
}

// resendLocked arms the retry of our pending resumption, which a cookie
// reply answered, with the same ticket. A responder under load answers
// with a cookie before it opens the message (docs/PROTOCOL.md section 8),
// so the ticket was not spent there; a full handshake instead would cost
// the loaded responder several times more. The retry is a new message 5
// (fresh ephemeral key, index and timestamp) carrying that ticket. A
// cookie reply proves nothing (anyone who saw the message's mac1 can make
// one): if the ticket was in fact taken, the responder refuses the retry
// as reused and the next retry is a full handshake, as after any refusal.
//
// Once per ticket: a cookie reply to the resend arms nothing, and the next
// attempt is a full handshake. Each resend puts the ticket on the wire
// again, linkable to the first message 5 by anyone who sees both; an
// expired cookie, or replies forged by anyone who saw the mac1, must not
// repeat it over and over.
//
// The resend is the retry the cookie reply starts at once, and only that
// one: a retry the timers start instead (the holder could not send, e.g. no
// endpoint yet) ends the attempt and drops the ticket (endAttemptLocked),
// as does giving up.
func (p *Peer) resendLocked() {
	if p.sent != nil && !p.sent.resent {
		p.resend = true
	}
}

// endAttemptLocked is the timers' verdict on our pending initiation: a retry
// is due, so it went unanswered. A resumption's ticket is discarded then
// (docs/PROTOCOL.md section 10.5: one message-5 attempt per ticket), with
// any resend a cookie reply armed and the holder never sent.
func (p *Peer) endAttemptLocked(act rekey.Action) {
	if act&rekey.ActSendInitiation != 0 {
		p.dropSentLocked()
	}
}

// dropSentLocked zeroes the ticket our pending resumption carries: the
// resumption completed or was abandoned.
func (p *Peer) dropSentLocked() {
	p.sent.zero()
	p.sent, p.resend = nil, false
}

// newPending builds our next handshake: a resumption with the ticket
// takeTicketLocked gives, else a full initiation. It returns the ticket a
// resumption carries, which the caller keeps (Peer.sent) while that
// resumption waits: a cookie reply to it makes the retry resume with it
// again. A full initiation returns none.
func (p *Peer) newPending(now time.Time, idx uint32) (pendingHandshake, *heldTicket, error) {
	p.mu.Lock()
	t := p.takeTicketLocked(now)
	p.forceFull = false
	info := p.info
	p.mu.Unlock()
	if t != nil {
		r, err := handshake.NewResumption(p.host.cfg, info, t.ticket, &t.secret, idx)
		if err == nil {
			return r, t, nil
		}
		t.zero()
	}
	in, err := handshake.NewInitiation(p.host.cfg, info, idx)
	if err != nil {
		return nil, nil, err
	}
	return in, nil, nil
}

// ForceFullHandshake makes the next handshake a full one, whatever ticket
// is held (an operator's rekey, a changed key).
func (p *Peer) ForceFullHandshake() {
	p.mu.Lock()
	p.forceFull = true
	p.held.zero()
	p.held = nil
	// The pending resumption's retry would not use its ticket now
	// (takeTicketLocked); its copy is zeroed at once.
	p.dropSentLocked()
	p.mu.Unlock()
}

// ReceiveControl takes a session control message that arrived, authenticated
// and not replayed, under kp (the decrypted payload, starting with
// handshake.ControlMarker). Today that is a new ticket: kept, with the
// resumption secret of kp's session, for the next rekey or reconnect. An
// error means the message does not parse: the holder counts it malformed.
//
// A ticket under a session we did not initiate (only initiators are given
// tickets), or whose place a newer handshake of ours took before the ticket
// arrived (as when both sides initiate at once), is stale: authenticated,
// not malformed, and of no use, since the resumption secret it needs is
// gone. It is discarded and ReceiveControl returns nil, so no holder has to
// tell it apart; the next handshake brings another ticket.
func (p *Peer) ReceiveControl(plain []byte, kp *rekey.Keypair, now time.Time) error {
	ticket, lifetime, err := handshake.ParseTicketMessage(plain)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.secretFor == nil || p.secretFor != kp {
		return nil // stale: discarded
	}
	p.held.zero()
	p.held = &heldTicket{ticket: bytes.Clone(ticket), secret: p.secret, received: now, expires: now.Add(lifetime)}
	clear(p.secret[:])
	p.secretFor = nil
	return nil
}

// TicketFor returns, once, the new-ticket control message to send under kp
// now that the peer confirmed it (Received said promoted); nil if none.
func (p *Peer) TicketFor(kp *rekey.Keypair) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ticketFor != kp || p.ticketMsg == nil {
		return nil
	}
	msg := p.ticketMsg
	p.ticketMsg, p.ticketFor = nil, nil
	return msg
}

// issueLocked seals a ticket for the session the responder just accepted,
// to be sent once the initiator confirms kp.
func (p *Peer) issueLocked(sess *handshake.Session, kp *rekey.Keypair, authTime time.Time) {
	issuer := p.host.ticketPolicy().issuer
	if issuer == nil {
		return
	}
	msg, err := issuer.Issue(sess, p.host.public, p.cfg.PublicKey, authTime)
	if err != nil {
		p.host.logIssueError(p.cfg.ID, err)
		return
	}
	p.ticketMsg, p.ticketFor = msg, kp
	p.host.noKeyLogged.Store(false)
}

// ResumptionRefused counts a resumption of this peer's that we refused, by
// reason (the holder classifies the error).
func (p *Peer) ResumptionRefused(reason string) {
	p.mu.Lock()
	if p.refused == nil {
		p.refused = make(map[string]uint64)
	}
	p.refused[reason]++
	p.mu.Unlock()
}

// TicketStatus is the ticket a peer holds for us, for show.
type TicketStatus struct {
	Received time.Time
	Expires  time.Time
}

// dropStaleSecretsLocked zeroes the resumption secrets that can no longer
// serve: the one waiting for its session's ticket once that session's key
// expired (a ticket arrives under that key, which opens nothing any more),
// and the held ticket's, or the one our pending resumption carries, once
// the ticket expired (the peer would refuse it).
// Neither waits for the keypair to leave its slot at 3 x reject_after.
func (p *Peer) dropStaleSecretsLocked(now time.Time) {
	if p.secretFor != nil && p.secretFor.Expired(now) {
		clear(p.secret[:])
		p.secretFor = nil
	}
	if p.held != nil && !now.Before(p.held.expires) {
		p.held.zero()
		p.held = nil
	}
	if p.sent != nil && !now.Before(p.sent.expires) {
		p.dropSentLocked()
	}
}
