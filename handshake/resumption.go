package handshake

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/flynn/noise"
)

// Resumption is one pending resumed handshake toward one peer (messages 5 and
// 6, Noise_NNpsk0): the ticket and its resumption secret stand in for the
// static keys, a fresh ee DH gives forward secrecy. Safe for concurrent use.
//
// Sending is as for an Initiation: msg := r.Message(); cookieGen.AddMACs(msg);
// send msg. A ticket is consumed by the responder only once message 5
// authenticates, so a resend after a lost message 5 may reuse the ticket (in a
// new Resumption); after a lost message 6 the responder refuses it
// (ErrTicketReused) and the caller falls back to a full handshake.
type Resumption struct {
	// Immutable after NewResumption.
	peerID     string
	mac1Key    [32]byte // of messages to us: checks message 6
	localIndex uint32
	offer      cipherSet
	msg        []byte // message 5 with both MACs zero
	prefix     int    // length of the prologue part of msg (header, length, ticket)

	mu    sync.Mutex
	hs    *noise.HandshakeState  // guarded by mu; nil once finished
	psk   [32]byte               // guarded by mu: the ticket's Noise PSK, kept to rebuild hs
	eph   [KeySize]byte          // guarded by mu: ephemeral private key, kept to rebuild hs
	plain [resumePayloadLen]byte // guarded by mu: message 5's payload, kept to rebuild hs
	done  bool                   // guarded by mu
}

// NewResumption starts a resumed handshake from cfg to peer with a ticket the
// peer issued and the resumption secret of the session that delivered it
// (Session.ResumptionSecret of that session). Our static key is used only
// for the mac1 key of message 6, which needs its public half: no static-key
// operation happens (with a token key: no token operation). peer.PublicKey
// keys mac1 (through CookieGenerator.AddMACs) and peer.PresharedKey is mixed
// into the PSK. The caller should drop the ticket once message 6 arrives or
// is refused: a ticket resumes at most one session.
func NewResumption(cfg *Config, peer PeerInfo, ticket []byte, secret *[32]byte, localIndex uint32) (*Resumption, error) {
	if cfg.Static == nil && cfg.PrivateKey.IsZero() {
		return nil, errors.New("our private key is not set")
	}
	if len(ticket) == 0 || len(ticket) > MaxTicketLen {
		return nil, fmt.Errorf("ticket is %d bytes, want 1..%d", len(ticket), MaxTicketLen)
	}
	r := &Resumption{
		peerID:     peer.ID,
		mac1Key:    localMAC1Key(cfg),
		localIndex: localIndex,
		offer:      localCipherSet(cfg.Cipher, cfg.aesHardware()),
		msg:        make([]byte, ResumptionOverhead+len(ticket)),
		prefix:     resumeOffTicket + len(ticket),
	}
	resumptionPSK(&r.psk, secret, &peer.PresharedKey)
	if _, err := io.ReadFull(cfg.rand(), r.eph[:]); err != nil {
		r.Zero()
		return nil, fmt.Errorf("ephemeral key: reading randomness: %w", err)
	}
	putHeader(r.msg, MessageTypeResumptionInitiation)
	binary.LittleEndian.PutUint16(r.msg[resumeOffTicketLen:], uint16(len(ticket)))
	copy(r.msg[resumeOffTicket:], ticket)
	p := resumePayload{sender: localIndex, stamp: nextTimestamp(cfg.now()), offer: r.offer}
	p.marshal(&r.plain)
	hs, err := r.writeMessage5(r.msg)
	if err != nil {
		r.Zero()
		return nil, err
	}
	r.hs = hs
	return r, nil
}

// writeMessage5 runs the Noise side of message 5 into dst after its prefix.
// Deterministic given r.eph, so a Noise state corrupted by a forged message 6
// can be rebuilt (as Initiation.writeMessage1).
func (r *Resumption) writeMessage5(dst []byte) (*noise.HandshakeState, error) {
	hs, err := newResumeNoise(true, bytes.NewReader(r.eph[:]), r.msg[:r.prefix], &r.psk)
	if err != nil {
		return nil, fmt.Errorf("starting resumption: %w", err)
	}
	out, _, _, err := hs.WriteMessage(dst[:r.prefix], r.plain[:])
	if err != nil {
		return nil, fmt.Errorf("writing resumption: %w", err)
	}
	if want := r.prefix + resumeTailLen; len(out) != want {
		return nil, fmt.Errorf("writing resumption: Noise produced %d bytes, want %d", len(out), want)
	}
	clear(dst[len(out):])
	return hs, nil
}

// Message returns a new copy of message 5 with mac1 and mac2 zero: pass it
// through the peer's CookieGenerator.AddMACs before sending.
func (r *Resumption) Message() []byte { return bytes.Clone(r.msg) }

// LocalIndex is the index this resumption put in message 5.
func (r *Resumption) LocalIndex() uint32 { return r.localIndex }

// ConsumeResponse authenticates message 6 and returns the resumed session
// (Resumed set, PeerID = the PeerInfo.ID given to NewResumption). Failures
// before authentication leave it waiting, as Initiation.ConsumeResponse.
func (r *Resumption) ConsumeResponse(msg []byte) (*Session, error) {
	if err := checkResponseFrame(msg, MessageTypeResumptionResponse, ResumptionResponseSize, "resumption response", r.localIndex, &r.mac1Key); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil, ErrHandshakeDone
	}
	s, readErr, err := completeResponse(r.hs, msg, r.offer, 6)
	if readErr != nil {
		r.rebuildLocked()
		return nil, ErrDecrypt // no static key is used by a resumption
	}
	r.finishLocked()
	if err != nil {
		return nil, err
	}
	s.PeerID, s.Resumed = r.peerID, true
	s.LocalIndex = r.localIndex
	return s, nil
}

func (r *Resumption) rebuildLocked() {
	scratch := make([]byte, len(r.msg))
	copy(scratch, r.msg[:r.prefix])
	hs, err := r.writeMessage5(scratch)
	if err != nil || !bytes.Equal(scratch, r.msg) {
		r.finishLocked()
		return
	}
	clear(r.hs.LocalEphemeral().Private)
	r.hs = hs
}

func (r *Resumption) finishLocked() {
	if r.hs != nil {
		clear(r.hs.LocalEphemeral().Private)
	}
	r.hs = nil
	r.done = true
	clear(r.psk[:])
	clear(r.eph[:])
	clear(r.plain[:])
}

// Zero abandons the resumption and wipes its secrets.
func (r *Resumption) Zero() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishLocked()
}

// localMAC1Key is the mac1 key of messages sent to us: the only use of our
// static key in a resumption, and it needs only the public half.
func localMAC1Key(cfg *Config) [32]byte {
	if cfg.Static != nil {
		return mac1Key(cfg.Static.Public())
	}
	return deriveLocalKeys(&cfg.PrivateKey).mac1Key
}

// ConsumeResumption authenticates message 5 and answers it with message 6.
// The checks, in order (docs/PROTOCOL.md 10.5): framing, mac1, the ticket
// (open: key, integrity, expiry, reauth_after), the responder it names (our
// own static key), the peer it names (still configured, same static key
// and pre-shared key), the Noise message under
// the ticket's PSK, the timestamp (growing per peer, shared with
// initiations), one use of the ticket. A ticket that does not open leaves
// no state behind.
//
// On success it returns message 6 (mac1 filled), the session (Resumed) and the
// opened ticket state: the caller issues the next ticket from the session and
// st.AuthTime (a resumption proves no static key, so the auth time carries
// over). The caller zeroes st. Errors wrap one sentinel; once the ticket is
// open they are *PeerError naming its peer ID. On ErrCipherMismatch message 6
// is returned (cipher 0) to be sent, and the ticket is spent.
func (r *Responder) ConsumeResumption(msg []byte, localIndex uint32, open TicketOpener) (resp []byte, s *Session, st *TicketState, err error) {
	n, err := resumeTicketLen(msg)
	if err != nil {
		return nil, nil, nil, err
	}
	if !checkMAC1(&r.local.mac1Key, msg, len(msg)-2*macLen) {
		return nil, nil, nil, ErrBadMAC1
	}
	if open == nil {
		return nil, nil, nil, fmt.Errorf("%w: this host issues no tickets", ErrTicketKeyUnknown)
	}
	ticket := msg[resumeOffTicket : resumeOffTicket+n]
	st, err = open.OpenTicket(ticket)
	if err != nil {
		return nil, nil, nil, err
	}
	resp, s, err = r.resume(msg, ticket, localIndex, open, st)
	if err != nil {
		id := st.PeerID
		st.Zero()
		return resp, nil, nil, &PeerError{PeerID: id, Err: err}
	}
	return resp, s, st, nil
}

func (r *Responder) resume(msg, ticket []byte, localIndex uint32, open TicketOpener, st *TicketState) ([]byte, *Session, error) {
	// A ticket resumes only at the identity that issued it: interfaces of
	// other static keys may share the ticket keys (one key file copied
	// where it should not be), and would otherwise stand in for the issuer
	// with the keys they derive from the ticket. Public keys: a plain
	// comparison. No responder has the zero key.
	if st.ResponderStatic.IsZero() || st.ResponderStatic != r.local.pub {
		return nil, nil, fmt.Errorf("%w: issued by another responder identity (its ticket keys are shared with a static key other than ours)", ErrTicketInvalid)
	}
	if r.cfg.Peers == nil {
		return nil, nil, fmt.Errorf("%w: no peers configured", ErrUnknownPeer)
	}
	info, err := r.cfg.Peers.LookupPeer([]byte(st.PeerID))
	switch {
	case err != nil && !errors.Is(err, ErrUnknownPeer):
		return nil, nil, fmt.Errorf("%w: %w", ErrUnknownPeer, err)
	case err != nil || info.PublicKey.IsZero():
		return nil, nil, fmt.Errorf("%w (removed since the ticket was issued)", ErrUnknownPeer)
	}
	if subtle.ConstantTimeCompare(st.PeerStatic[:], info.PublicKey[:]) != 1 {
		return nil, nil, fmt.Errorf("%w (changed since the ticket was issued)", ErrKeyMismatch)
	}
	// psk_r mixes the current PSK only: an initiator that has the new one
	// too would resume a session first made under the revoked one. The
	// ticket names the PSK it was issued under; before the Noise message,
	// as the static key is checked.
	pskTag := info.PresharedKey.Tag()
	if st.HasPSKTag && subtle.ConstantTimeCompare(st.PSKTag[:], pskTag[:]) != 1 {
		return nil, nil, fmt.Errorf("%w (changed since)", ErrPSKMismatch)
	}
	var psk [32]byte
	resumptionPSK(&psk, &st.ResumptionSecret, &info.PresharedKey)
	prefix := resumeOffTicket + len(ticket)
	hs, err := newResumeNoise(false, r.cfg.rand(), msg[:prefix], &psk)
	clear(psk[:])
	if err != nil {
		return nil, nil, fmt.Errorf("starting resumption: %w", err)
	}
	var plainBuf [resumePayloadLen]byte
	plain, _, _, err := hs.ReadMessage(plainBuf[:0], msg[prefix:prefix+resumeTailLen])
	if err != nil {
		return nil, nil, ErrDecrypt
	}
	p, err := parseResumePayload(plain)
	if err != nil {
		return nil, nil, err
	}
	if err := r.admit(st.PeerID, p.stamp); err != nil {
		return nil, nil, err
	}
	if err := open.ConsumeTicket(ticket, st); err != nil {
		return nil, nil, err
	}

	accept := localCipherSet(r.cfg.Cipher, r.cfg.aesHardware())
	chosen := chooseCipher(accept, p.offer)
	resp := make([]byte, ResumptionResponseSize)
	putHeader(resp, MessageTypeResumptionResponse)
	binary.LittleEndian.PutUint32(resp[respOffReceiver:], p.sender)
	var rp [respPayloadLen]byte
	(&respPayload{sender: localIndex, chosen: chosen, accept: accept}).marshal(&rp)
	out, cs1, cs2, err := hs.WriteMessage(resp[:respOffEphemeral], rp[:])
	if err != nil || len(out) != respOffMAC1 || cs1 == nil || cs2 == nil {
		clear(hs.LocalEphemeral().Private)
		return nil, nil, fmt.Errorf("writing resumption response: %v", err)
	}
	initiatorMAC1 := mac1Key(info.PublicKey)
	mac(resp[respOffMAC1:respOffMAC2], initiatorMAC1[:], resp[:respOffMAC1])
	if chosen == CipherNone {
		clear(hs.LocalEphemeral().Private)
		return resp, nil, cipherMismatch("peer offers %v, we accept %v", p.offer, accept)
	}
	s := finish(hs, cs1, cs2, chosen, false)
	s.PeerID, s.Resumed, s.PSKTag = st.PeerID, true, pskTag
	s.LocalIndex, s.RemoteIndex = localIndex, p.sender
	return resp, s, nil
}
