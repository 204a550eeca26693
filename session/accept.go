package session

import (
	"fmt"
	"time"

	"stunnel/handshake"
)

// ErrPeerKeyChanged: Accept or AcceptResumed refused a handshake because
// the keys it was made under are not those this Peer was made with: the
// static key it proved (the initiator's, or the one its ticket was issued
// to), or, as ErrPeerPSKChanged (which wraps it), the pre-shared key it
// mixed. The holder's lookup answered with other keys than the Peer holds:
// the daemon's configuration was reloaded with a new public_key or
// preshared_key between the responder's lookup and the Accept, or a
// securesession lookup now names other keys for an ID whose Session
// already has its peer. A reload is how an operator revokes a key, the
// pre-shared one included: a handshake made under the old one must not get
// in. It wraps handshake.ErrKeyMismatch, which a lookup that already had
// the Peer's key would have returned.
var ErrPeerKeyChanged = fmt.Errorf("%w: the handshake proved another key than this peer was set up with (the key configured for its ID changed since)", handshake.ErrKeyMismatch)

// ErrPeerPSKChanged is ErrPeerKeyChanged for the pre-shared key:
// errors.Is(ErrPeerPSKChanged, ErrPeerKeyChanged) holds, so a holder
// treats both alike; only the text differs.
var ErrPeerPSKChanged error = &keyChangedError{
	text: "the handshake was made under another pre-shared key than this peer was set up with (the pre-shared key configured for its ID changed since)",
}

// keyChangedError is a refusal of the ErrPeerKeyChanged family with its
// own text (ErrPeerKeyChanged's speaks of the static key).
type keyChangedError struct{ text string }

func (e *keyChangedError) Error() string { return e.text }
func (e *keyChangedError) Unwrap() error { return ErrPeerKeyChanged }

// Accept installs the session of a peer's initiation that we answered
// (Host.ConsumeInitiation), under our index idx. It becomes the next
// keypair, promoted when the initiator's first packet under it arrives
// (Received): until then an initiation, which anyone may replay, moves
// nothing. Every valid initiation is answered, also while our own is
// pending: that one stays pending, and whichever session the peer
// confirms wins (docs/PROTOCOL.md, "Crossing initiations"). A ticket for
// the initiator is sealed now and sent once it confirms (TicketFor). sess
// is zeroed. On error idx is released and nothing changed but a
// ReasonKeySetup problem (keys that cannot be used); ErrPeerKeyChanged
// (ErrPeerPSKChanged) writes no problem: the initiator is not this peer as
// configured now.
func (p *Peer) Accept(sess *handshake.Session, idx uint32, now time.Time) error {
	return p.accept(sess, sess.PeerStatic, idx, now, now)
}

// AcceptResumed is Accept for a resumption (Host.ConsumeResumption): the
// next ticket carries over the opened ticket's last static-key proof, so a
// chain of resumptions never extends it. The ticket's key (st.PeerStatic)
// must be the Peer's, and the session's pre-shared key too, as for Accept.
// st is zeroed.
func (p *Peer) AcceptResumed(sess *handshake.Session, st *handshake.TicketState, idx uint32, now time.Time) error {
	defer st.Zero()
	return p.accept(sess, st.PeerStatic, idx, now, st.AuthTime)
}

// accept installs sess, whose handshake proved the static key proven.
func (p *Peer) accept(sess *handshake.Session, proven handshake.PublicKey, idx uint32, now, authTime time.Time) error {
	defer sess.Zero()
	// The responder checked proven against its lookup, and mixed the
	// pre-shared key the lookup gave (sess.PSKTag names it); the holder
	// may have changed both since it made this Peer. Checked here, not by
	// each holder, so the daemon and securesession cannot differ.
	if err := p.sameKeys(proven, &sess.PSKTag); err != nil {
		p.reg.Release(idx)
		return err
	}
	kp, err := p.install(sess, idx, now, time.Time{})
	if err != nil {
		return err
	}
	// Two Accepts of this peer may overlap (two handshake workers). Only
	// the one whose keypair is still in the next slot records it: an older
	// Accept that gets here after a newer Install dropped (and zeroed) its
	// keypair would otherwise point nextKP and ticketFor at a dead keypair,
	// and the newer one, when confirmed, would get no ticket and be counted
	// as a full handshake. Reading the slot under p.mu (Peer.mu, then the
	// Keypairs' lock: the lock order) decides it: an Install after the
	// check is followed by its own Accept's section, which runs after ours.
	// Nothing else moves kp out of next before we return: the peer cannot
	// confirm it before it has our response, sent after Accept.
	p.mu.Lock()
	if _, _, next := p.keypairs.Slots(); next == kp {
		p.nextKP, p.nextResumed = kp, sess.Resumed
		p.issueLocked(sess, kp, authTime)
		// Not completed until confirmed, but live: the zero-keys timer of
		// the last completed handshake must not drop it meanwhile.
		p.timers.KeysDerived(now)
	}
	p.mu.Unlock()
	return nil
}
