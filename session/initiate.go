package session

import (
	"errors"
	"fmt"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// ErrNotPending: a response for a handshake we no longer wait for (answered
// already, superseded by a newer attempt, or never ours).
var ErrNotPending = errors.New("response for a handshake that is not pending")

// giveUpLocked abandons our initiation and says why; the caller zeroes
// what it returns once it has let go of p.mu (abandonLocked).
func (p *Peer) giveUpLocked(now time.Time) pendingHandshake {
	p.problem = Problem{Reason: ReasonGaveUp, Cause: p.problem.Reason, Detail: p.problem.String(),
		Endpoint: p.initiationEndpoint, Attempts: p.timers.Attempts(), At: now}
	return p.abandonLocked()
}

// Initiate builds a handshake initiation toward the peer, to be sent to
// endpoint (named in messages only). Any earlier attempt is abandoned and
// its ephemeral key zeroed. attempt counts the initiations of this
// handshake before this one: above zero, the earlier ones went unanswered.
func (p *Peer) Initiate(now time.Time, endpoint string) (msg []byte, attempt int, err error) {
	idx := p.reg.Reserve()
	hs, ticket, err := p.newPending(now, idx) // X25519 work: no lock held
	if err != nil {
		p.reg.Release(idx)
		p.SetProblem(Problem{Reason: ReasonStartFailed, Detail: err.Error(), At: now})
		return nil, 0, err
	}
	msg = hs.Message()

	p.mu.Lock()
	// The MACs under p.mu, with the initiation they belong to: the cookie
	// generator opens a reply with the last mac1 it made, which is then
	// always p.initiation's (ConsumeCookieReply). Two BLAKE2s, no DH.
	p.cookies.AddMACs(msg)
	abandoned := p.abandonLocked()
	p.initiation, p.initiationIndex, p.initiationEndpoint, p.initiationSent = hs, idx, endpoint, now
	p.sent = ticket
	if p.timers.Handshaking() {
		attempt = p.timers.Attempts()
	}
	if attempt > 0 && (p.problem.Reason == ReasonNone || p.problem.Reason == ReasonNoAnswer) {
		// The responder stays silent on a refusal it cannot authenticate
		// (it must not help a prober), so silence is all we can report.
		p.problem = Problem{Reason: ReasonNoAnswer, Endpoint: endpoint, Attempts: attempt,
			Detail: fmt.Sprintf("%q", p.host.cfg.PeerID), At: now}
	}
	p.timers.HandshakeInitiated(now)
	p.mu.Unlock()
	zeroPending(abandoned)
	return msg, attempt, nil
}

// abandonLocked drops our pending initiation: its index is released and
// the ticket it carries zeroed at once, and the caller zeroes the
// initiation it returns (zeroPending) once it has let go of p.mu. Zero
// takes the initiation's own lock, which a ConsumeResponse holds through
// its public-key work (a token operation takes milliseconds, a hung token
// up to its 3 s bound): waited for under p.mu, that work would stall the
// data path, which stamps the timers under p.mu for every batch. A
// response consumed meanwhile finds the initiation gone (ErrNotPending)
// and its session is zeroed.
func (p *Peer) abandonLocked() pendingHandshake {
	p.dropSentLocked()
	in := p.initiation
	if in == nil {
		return nil
	}
	p.reg.Release(p.initiationIndex)
	p.initiation = nil
	return in
}

// zeroPending zeroes an abandoned initiation (nil: none); never under p.mu.
func zeroPending(in pendingHandshake) {
	if in != nil {
		in.Zero()
	}
}

// Completed describes a handshake that completed on our side.
type Completed struct {
	Keypair *rekey.Keypair // nil when Yielded
	Cipher  handshake.Cipher
	Resumed bool
	// Yielded: both sides initiated at once and the peer's session won
	// (rekey.Keypairs.Install): ours was dropped, nothing is confirmed, and
	// the peer's confirmation of its session completes the handshake.
	Yielded bool
}

// ConsumeResponse completes our handshake (full or resumed) with the
// response that arrived for index idx. On success the new keypair is
// current (we send under it at once) and the holder confirms it to the
// peer: packets that waited, else a keepalive. Errors: ErrNotPending, or
// the handshake package's sentinels. A response that does not authenticate
// changes nothing: a forger cannot abort our handshake or write our Problem.
func (p *Peer) ConsumeResponse(idx uint32, msg []byte, from string, now time.Time) (Completed, error) {
	p.mu.Lock()
	in, sent := p.initiation, p.initiationSent
	if in == nil || p.initiationIndex != idx {
		p.mu.Unlock()
		return Completed{}, ErrNotPending
	}
	p.mu.Unlock()

	sess, err := in.ConsumeResponse(msg) // X25519 work: no lock held
	if err != nil {
		if errors.Is(err, handshake.ErrCipherMismatch) { // authenticated: the peer really refused
			var abandoned pendingHandshake
			p.mu.Lock()
			if p.initiation == in {
				abandoned = p.abandonLocked()
			}
			p.problem = Problem{Reason: ReasonResponseRejected, Endpoint: from, Detail: err.Error(), At: now}
			p.mu.Unlock()
			zeroPending(abandoned)
		}
		return Completed{}, err
	}
	defer sess.Zero()
	p.mu.Lock()
	if p.initiation != in { // superseded while we computed
		p.mu.Unlock()
		return Completed{}, ErrNotPending
	}
	p.initiation = nil // its index now belongs to the session
	p.dropSentLocked()
	p.mu.Unlock()
	in.Zero()
	kp, err := p.install(sess, idx, now, sent)
	return Completed{Keypair: kp, Cipher: sess.Cipher, Resumed: sess.Resumed, Yielded: kp == nil && err == nil}, err
}
