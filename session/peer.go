package session

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// Registry is the holder's table of receiver indices. The Peer reserves an
// index for each handshake it starts or answers, registers it with the
// keypair once the handshake is done (packets under that index then open
// with it), and releases it when the handshake is abandoned or the keypair
// dropped. Implementations must be safe for concurrent use and must not call
// back into the Peer.
type Registry interface {
	// Reserve returns a fresh non-zero index bound to this peer, no key yet.
	Reserve() uint32
	// Claim binds a given index to this peer (a session restored after a
	// restart keeps its index); false if it is taken.
	Claim(idx uint32) bool
	// Register makes idx open packets with kp (sealed with cipher c).
	Register(idx uint32, kp *rekey.Keypair, c handshake.Cipher)
	// Release forgets idx.
	Release(idx uint32)
}

// PeerConfig is what a holder knows about a remote peer.
type PeerConfig struct {
	ID           string
	PublicKey    handshake.PublicKey
	PresharedKey handshake.PresharedKey // zero: none
	// PersistentKeepalive, when positive, overrides the policy's: a
	// keepalive at this interval keeps a NAT mapping open.
	PersistentKeepalive time.Duration
}

// Peer is one remote peer's sessions. See the package comment for what it
// does and the lock order.
type Peer struct {
	host    *Host
	cfg     PeerConfig         // immutable but for ZeroSecrets, which writes the PSK under mu
	info    handshake.PeerInfo // likewise
	reg     Registry
	cookies *handshake.CookieGenerator // safe for concurrent use

	// pskTag is cfg.PresharedKey.Tag(), immutable (ZeroSecrets leaves it:
	// the Peer is not used after): Accept compares a session's tag with it
	// without reading the key or taking mu.
	pskTag [32]byte

	// keypairs is read on the packet path without mu; it has its own lock.
	keypairs rekey.Keypairs

	cookieReplies atomic.Uint64 // cookie replies taken from the peer

	mu                  sync.Mutex // guards the fields below; never held during public-key work
	persistentKeepalive time.Duration
	timers              *rekey.Timers
	initiation          pendingHandshake // our handshake (full or resumed) waiting for its response
	initiationIndex     uint32
	initiationEndpoint  string    // where it went, for messages
	initiationSent      time.Time // when it was made: a peer's session answered before it is no crossing
	problem             Problem
	lastHandshake       time.Time
	lastFull            time.Time // last full handshake: reauth_after counts from it
	handshakes          uint64    // completed, either role, full or resumed
	resumed             uint64    // of which resumptions
	refused             map[string]uint64

	// Tickets, initiator side: the ticket the peer gave us, and the
	// resumption secret of our newest initiated session until its ticket
	// arrives (secretFor is that session's keypair).
	held      *heldTicket
	forceFull bool
	// sent: the ticket our pending resumption (initiation) carries, kept
	// with its secret while it waits, for a retry after a cookie reply
	// (resend: one came; once per ticket, see resendLocked); zeroed when
	// it completes or is abandoned, or when the timers retry instead.
	sent      *heldTicket
	resend    bool
	secret    [32]byte
	secretFor *rekey.Keypair
	// Responder side: the ticket to send once the initiator confirms
	// ticketFor, and whether the next keypair came from a resumption.
	ticketMsg   []byte
	ticketFor   *rekey.Keypair
	nextKP      *rekey.Keypair
	nextResumed bool
	// ciphers names each live keypair's AEAD, for saving it.
	ciphers  map[*rekey.Keypair]handshake.Cipher
	restored bool // the current session came back from a saved state
	// restoreTried: Restore ran once; a second one is refused, as a saved
	// state must never be imported twice (its send counters would repeat).
	restoreTried bool
}

// NewPeer makes the session state of one remote peer under h.
func (h *Host) NewPeer(pc PeerConfig, reg Registry) *Peer {
	p := &Peer{
		host:                h,
		cfg:                 pc,
		info:                handshake.PeerInfo{ID: pc.ID, PublicKey: pc.PublicKey, PresharedKey: pc.PresharedKey},
		pskTag:              pc.PresharedKey.Tag(),
		reg:                 reg,
		cookies:             handshake.NewCookieGenerator(pc.PublicKey, h.now),
		persistentKeepalive: pc.PersistentKeepalive,
	}
	p.timers = rekey.NewTimers(p.timerPolicy(h.Policy()), h.jitter)
	return p
}

func (p *Peer) timerPolicy(policy rekey.Policy) rekey.Policy {
	if p.persistentKeepalive > 0 {
		policy.PersistentKeepalive = p.persistentKeepalive
	}
	return policy
}

// Format prints the peer's ID, never its keys: fmt would print the
// unexported configuration's pre-shared key and the resumption secret
// byte by byte.
func (p *Peer) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "(peer %q)", p.cfg.ID) }

// ID is the peer's ID.
func (p *Peer) ID() string { return p.cfg.ID }

// PublicKey is the peer's static public key.
func (p *Peer) PublicKey() handshake.PublicKey { return p.cfg.PublicKey }

// PresharedKey is the peer's pre-shared key (zero: none). Never log it.
func (p *Peer) PresharedKey() handshake.PresharedKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.PresharedKey
}

// ZeroSecrets overwrites the peer's pre-shared key (the peer was removed:
// a reload, Close). Call it after Clear; the Peer is not used again.
func (p *Peer) ZeroSecrets() {
	p.mu.Lock()
	p.cfg.PresharedKey.Zero()
	p.info.PresharedKey.Zero()
	p.mu.Unlock()
}

// Current is the keypair to seal with at now, or nil: then the holder
// queues what it wanted to send and calls WantHandshake. Lock-free apart
// from the slots' read lock: this is the packet path.
func (p *Peer) Current(now time.Time) *rekey.Keypair { return p.keypairs.Current(now) }

// Slots exposes the keypair slots for status and tests.
func (p *Peer) Slots() (previous, current, next *rekey.Keypair) { return p.keypairs.Slots() }

// Latest reports whether kp is the current keypair or the next one (a
// packet under next confirms it: Received promotes it, so ask before
// Received). Any other keypair belongs to a session since replaced, which
// the other end may still hold: a gateway of a group the peer failed over
// from. One read lock: the packet path asks once per batch.
func (p *Peer) Latest(kp *rekey.Keypair) bool {
	_, current, next := p.keypairs.Slots()
	return kp != nil && (kp == current || kp == next)
}

// SetPolicy gives the peer's timers a new policy (a reload) and, when
// keepalive is non-negative, a new persistent-keepalive override.
func (p *Peer) SetPolicy(policy rekey.Policy, keepalive time.Duration, now time.Time) {
	p.mu.Lock()
	if keepalive >= 0 {
		p.persistentKeepalive = keepalive
	}
	p.timers.SetPolicy(p.timerPolicy(policy), now)
	p.mu.Unlock()
}

// WantHandshake says keys are wanted (a packet is waiting, or the current
// key asks for renewal) and returns what is due now: ActSendInitiation at
// once unless one went out less than a retry interval ago.
func (p *Peer) WantHandshake(now time.Time) rekey.Action {
	var abandoned pendingHandshake
	p.mu.Lock()
	p.timers.WantHandshake(now)
	act := p.timers.Due(now)
	p.endAttemptLocked(act)
	if act&rekey.ActGiveUp != 0 {
		abandoned = p.giveUpLocked(now)
	}
	p.mu.Unlock()
	zeroPending(abandoned)
	if act&rekey.ActZeroKeys != 0 {
		p.release(p.keypairs.Clear())
	}
	return act
}

// Due runs the timers at now and retires expired keys. It returns what the
// holder must do: ActSendInitiation (call Initiate), ActSendKeepalive,
// ActGiveUp (drop what waited for a key: the handshake has been abandoned
// and Problem says why), ActZeroKeys (already done; for the log).
func (p *Peer) Due(now time.Time) rekey.Action {
	var abandoned pendingHandshake
	p.mu.Lock()
	act := p.timers.Due(now)
	p.endAttemptLocked(act)
	if act&rekey.ActGiveUp != 0 {
		abandoned = p.giveUpLocked(now)
	}
	p.mu.Unlock()
	zeroPending(abandoned)
	if act&rekey.ActZeroKeys != 0 {
		p.release(p.keypairs.Clear())
	}
	p.release(p.keypairs.Expire(now))
	p.mu.Lock()
	p.dropStaleSecretsLocked(now)
	p.mu.Unlock()
	return act
}

// NextDeadline is when Due next has something to do (zero: nothing armed):
// the timers, and the expiry of a held ticket (or of the one our pending
// resumption carries), whose resumption secret Due then zeroes. Keys
// expire on their own schedule too; a holder that sleeps until
// NextDeadline must also call Due at least once per reject_after.
func (p *Peer) NextDeadline() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := p.timers.NextDeadline()
	for _, t := range []*heldTicket{p.held, p.sent} {
		if t != nil && (next.IsZero() || t.expires.Before(next)) {
			next = t.expires
		}
	}
	return next
}

// install makes a finished handshake's keys the peer's newest keypair; it
// returns nil, nil when a crossing initiation of the peer's won over ours.
// sent is when our initiation was made (initiator only).
func (p *Peer) install(sess *handshake.Session, idx uint32, now, sent time.Time) (*rekey.Keypair, error) {
	kp, err := newKeypair(sess, now, p.host.Policy())
	if err != nil {
		p.reg.Release(idx)
		p.SetProblem(Problem{Reason: ReasonKeySetup, Detail: err.Error(), At: now})
		return nil, err
	}
	p.reg.Register(idx, kp, sess.Cipher)
	p.mu.Lock()
	p.noteCipherLocked(kp, sess.Cipher)
	p.mu.Unlock()
	p.release(p.keypairs.InstallInitiated(kp, sent))
	if kp.IsZeroed() {
		// Crossing initiations, and the peer's session won
		// (rekey.Keypairs.Install): ours is dropped, and the handshake
		// completes when the peer confirms its own, which it does at once.
		return nil, nil
	}
	if sess.Initiator {
		p.mu.Lock()
		p.completedLocked(now, sess.Resumed)
		p.secret, p.secretFor = sess.ResumptionSecret, kp // the ticket for kp's session will need it
		p.mu.Unlock()
	}
	return kp, nil
}

// newKeypair builds the data-plane keypair of a finished handshake; the
// keypair takes over copies of the raw keys and zeroes them with itself.
func newKeypair(s *handshake.Session, now time.Time, policy rekey.Policy) (*rekey.Keypair, error) {
	send, err := handshake.NewAEAD(s.Cipher, &s.SendKey)
	if err != nil {
		return nil, fmt.Errorf("cipher %s: %w", s.Cipher, err)
	}
	recv, err := handshake.NewAEAD(s.Cipher, &s.RecvKey)
	if err != nil {
		return nil, fmt.Errorf("cipher %s: %w", s.Cipher, err)
	}
	sendKey, recvKey := new([32]byte), new([32]byte)
	*sendKey, *recvKey = s.SendKey, s.RecvKey
	return rekey.NewKeypair(send, recv, sendKey, recvKey, s.LocalIndex, s.RemoteIndex,
		s.SessionID, now, s.Initiator, policy), nil
}

// completedLocked records a completed handshake: for the initiator when the
// response arrives, for the responder when the initiator confirms the key.
func (p *Peer) completedLocked(now time.Time, resumed bool) {
	p.timers.HandshakeCompleted(now)
	p.handshakes++
	if resumed {
		p.resumed++
	} else {
		p.lastFull = now
	}
	p.lastHandshake = now
	p.problem = Problem{}
	p.restored = false
}

// Received tells the peer that packets authenticated under kp arrived (data
// says whether any carried payload). promoted: kp was the responder's next
// key and is now current (the handshake completed; flush what waited).
// rekeyNow: the current key, which we initiated, is old enough that we must
// renew it while we only receive. The current key decides, not kp: a late
// packet under the previous key starts no handshake when the current one
// is fresh (rekey.Keypairs.NeedsRekeyOnReceive).
func (p *Peer) Received(kp *rekey.Keypair, data bool, now time.Time) (promoted, rekeyNow bool) {
	promoted, dropped := p.keypairs.Received(kp)
	p.release(dropped)
	p.mu.Lock()
	p.timers.AuthenticatedReceived(now)
	if data {
		p.timers.DataReceived(now)
	}
	if promoted {
		p.completedLocked(now, kp == p.nextKP && p.nextResumed)
		p.nextKP = nil
	}
	p.mu.Unlock()
	return promoted, p.keypairs.NeedsRekeyOnReceive(now)
}

// Sent tells the timers that authenticated packets went out (data: with
// payload, not only keepalives).
func (p *Peer) Sent(data bool, now time.Time) {
	p.mu.Lock()
	p.timers.AuthenticatedSent(now)
	if data {
		p.timers.DataSent(now)
	}
	p.mu.Unlock()
}

// SetProblem records a problem the holder found (no endpoint, DNS).
func (p *Peer) SetProblem(pr Problem) {
	p.mu.Lock()
	p.problem = pr
	p.mu.Unlock()
}

// Clear zeroes every key and abandons the handshake in progress (the peer
// was removed or disconnected, or the tunnel stops), with its timers
// (rekey.Timers.Reset). The peer may handshake again afterwards: what
// wants keys next starts a new handshake.
func (p *Peer) Clear() {
	p.release(p.keypairs.Clear())
	p.mu.Lock()
	abandoned := p.abandonLocked()
	p.timers.Reset()
	p.held.zero()
	p.held = nil
	clear(p.secret[:])
	p.secretFor, p.ticketMsg, p.ticketFor, p.nextKP = nil, nil, nil, nil
	p.mu.Unlock()
	zeroPending(abandoned)
}

func (p *Peer) release(kps []*rekey.Keypair) {
	if len(kps) == 0 {
		return
	}
	p.mu.Lock()
	for _, kp := range kps {
		delete(p.ciphers, kp)
		if kp == p.secretFor {
			clear(p.secret[:])
			p.secretFor = nil
		}
	}
	p.mu.Unlock()
	for _, kp := range kps {
		p.reg.Release(kp.LocalIndex)
	}
}

func (p *Peer) noteCipherLocked(kp *rekey.Keypair, c handshake.Cipher) {
	if p.ciphers == nil {
		p.ciphers = make(map[*rekey.Keypair]handshake.Cipher, 3)
	}
	p.ciphers[kp] = c
}
