package session

import "stunnel/handshake"

// ConsumeCookieReply takes a cookie reply to our pending initiation: the
// peer is under load and wants proof of our address (mac2). The holder then
// sends a fresh initiation at once (Initiate), which carries the cookie.
// When the pending one is a resumption, so is the fresh one, with the same
// ticket, once per ticket (resendLocked; docs/PROTOCOL.md section 10.5).
//
// Only while an initiation of ours waits (docs/PROTOCOL.md section 8: a
// cookie reply moves SENT to SENT, and no other state takes one). The
// cookie generator alone would still open a reply to the last initiation
// after its handshake completed or was given up, and the holder would
// then start a handshake nobody wanted: at the word of a duplicate of
// that initiation answered late, or of anyone who saw its mac1 on the
// path (the cookie key is derived from the peer's public key). Refused
// with handshake.ErrNoCookieWaiting, before any cryptography.
//
// The reply is opened without p.mu (the intake calls this for datagrams
// anyone can send). It answers the initiation pending before and after
// only if that is one and the same: Initiate makes the MACs and installs
// the initiation together under p.mu. Otherwise the reply may have
// answered the newer one, and no ticket is resent: a full handshake, as
// before this rule.
func (p *Peer) ConsumeCookieReply(msg []byte) error {
	p.mu.Lock()
	in := p.initiation
	p.mu.Unlock()
	if in == nil {
		return handshake.ErrNoCookieWaiting
	}
	if err := p.cookies.ConsumeReply(msg); err != nil {
		return err
	}
	p.cookieReplies.Add(1)
	p.mu.Lock()
	if p.initiation == in {
		p.resendLocked()
	}
	p.mu.Unlock()
	return nil
}
