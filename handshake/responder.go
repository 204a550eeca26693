package handshake

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Responder answers initiations for one interface. Safe for concurrent use.
//
// The caller's receive path, in order (docs/PROTOCOL.md, "Responder"):
//
//	if !checker.CheckMAC1(msg) { drop }                       // no X25519 work yet
//	if load.UnderLoad(pending) {
//		if !checker.CheckMAC2(msg, src) { send checker.CreateReply(msg, src); stop }
//		if !limiter.Allow(src.Addr()) { drop }
//	}
//	resp, sess, err := responder.ConsumeInitiation(msg, newIndex)
//	if resp != nil { send resp }   // also with ErrCipherMismatch: the peer learns why
//	if err != nil { count/log err; stop }
type Responder struct {
	cfg   *Config    // read only
	local localKeys  // immutable
	key   StaticKey  // immutable; every static-key DH goes through it
	owned *memoryKey // key when made from Config.PrivateKey (its own copy), zeroed by Zero; else nil
	err   error      // immutable: why cfg has no usable static key, returned by ConsumeInitiation

	mu    sync.Mutex
	peers map[string]*peerState // guarded by mu; entries only for authenticated peers

	ss *ssMemo // nil unless the key is in memory (ssmemo.go); has its own lock
}

// peerState is what the responder remembers of an initiator that proved its key.
type peerState struct {
	lastStamp tai64n    // newest timestamp accepted: replays and older ones are refused
	lastInit  time.Time // when it was accepted: rate limit per peer
}

// NewResponder makes the responder side for cfg (which must stay unchanged while in use).
func NewResponder(cfg *Config) *Responder {
	// An in-memory key is wrapped with a copy of cfg.PrivateKey (owned):
	// Zero overwrites that copy, since zeroing cfg's does not reach it.
	key, local, owned, err := cfg.staticKey()
	r := &Responder{cfg: cfg, local: local, key: key, owned: owned, err: err, peers: make(map[string]*peerState)}
	if _, inMemory := key.(*memoryKey); inMemory {
		r.ss = newSSMemo()
	}
	return r
}

// Zero zeroes the responder's copy of an in-memory static private key and
// the static-static secrets it remembers (the interface closed). The
// caller's Config is not touched. Call it once no ConsumeInitiation runs
// or will run: the key copy is read without a lock by every handshake
// (after Zero a handshake fails, it never uses a zero key's results).
func (r *Responder) Zero() {
	if r.owned != nil {
		r.owned.zero()
	}
	if r.ss != nil {
		r.ss.zero()
	}
}

// Forget drops the replay and rate state of a peer (removed on reload). If the
// peer comes back, its next initiation is accepted whatever its timestamp.
func (r *Responder) Forget(peerID string) {
	r.mu.Lock()
	delete(r.peers, peerID)
	r.mu.Unlock()
	if r.ss != nil {
		r.ss.forget(peerID)
	}
}

// ConsumeInitiation authenticates message 1 and answers it. localIndex is the
// index the peer will put in packets to us. On success it returns message 2
// (MACs filled) and the session. Errors wrap one sentinel (errors.Is); once
// the claimed peer ID is decrypted they are *PeerError naming it. On
// ErrCipherMismatch the response is still returned (with no cipher chosen),
// to be sent so the initiator can report both sides' choices.
func (r *Responder) ConsumeInitiation(msg []byte, localIndex uint32) (response []byte, s *Session, err error) {
	if err := checkMessage(msg, MessageTypeInitiation, InitiationSize, "initiation"); err != nil {
		return nil, nil, err
	}
	// mac1 again: it costs one BLAKE2s, and keeps this method safe on its own.
	if !checkMAC1(&r.local.mac1Key, msg, initOffMAC1) {
		return nil, nil, ErrBadMAC1
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	var dhs dhRecord
	defer dhs.zero()
	dh := staticDH{key: r.key, memo: r.ss}
	var epoch uint64 // before the lookup: a Forget after it must win (ssMemo.erasures)
	if r.ss != nil {
		dh.record = &dhs
		epoch = r.ss.epoch()
	}
	hs, err := newNoiseStaticDH(false, r.cfg.rand(), dh, r.local.pub, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("starting handshake: %w", err)
	}
	var plainBuf [initPayloadLen]byte
	defer clear(plainBuf[:])
	plain, _, _, err := hs.ReadMessage(plainBuf[:0], msg[initOffEphemeral:initOffMAC1])
	if errors.Is(err, ErrStaticKey) {
		return nil, nil, err // a token failure, not a forgery: say so
	}
	if err != nil {
		return nil, nil, ErrDecrypt
	}
	p, err := parseInitPayload(plain)
	if err != nil {
		if p.id != nil {
			return nil, nil, &PeerError{PeerID: string(p.id), Err: err}
		}
		return nil, nil, err
	}
	id := string(p.id)
	if r.cfg.Peers == nil {
		return nil, nil, &PeerError{PeerID: id, Err: fmt.Errorf("%w: no peers configured", ErrUnknownPeer)}
	}
	info, err := r.cfg.Peers.LookupPeer(p.id)
	switch {
	case err != nil && !errors.Is(err, ErrUnknownPeer):
		return nil, nil, &PeerError{PeerID: id, Err: fmt.Errorf("%w: %w", ErrUnknownPeer, err)}
	case err != nil || info.PublicKey.IsZero():
		return nil, nil, &PeerError{PeerID: id, Err: ErrUnknownPeer}
	}
	if subtle.ConstantTimeCompare(hs.PeerStatic(), info.PublicKey[:]) != 1 {
		return nil, nil, &PeerError{PeerID: id, Err: ErrKeyMismatch}
	}
	if err := r.admit(id, p.stamp); err != nil {
		return nil, nil, &PeerError{PeerID: id, Err: err}
	}
	// The peer proved info.PublicKey: its static-static DH may be kept.
	if ss := dhs.find(info.PublicKey); ss != nil {
		r.ss.remember(id, info.PublicKey, ss, epoch)
	}

	accept := localCipherSet(r.cfg.Cipher, r.cfg.aesHardware())
	chosen := chooseCipher(accept, p.offer)
	if err := hs.SetPresharedKey(info.PresharedKey[:]); err != nil {
		return nil, nil, &PeerError{PeerID: id, Err: fmt.Errorf("pre-shared key: %w", err)}
	}
	resp := make([]byte, ResponseSize)
	putHeader(resp, MessageTypeResponse)
	binary.LittleEndian.PutUint32(resp[respOffReceiver:], p.sender)
	var rp [respPayloadLen]byte
	(&respPayload{sender: localIndex, chosen: chosen, accept: accept}).marshal(&rp)
	out, cs1, cs2, err := hs.WriteMessage(resp[:respOffEphemeral], rp[:])
	if err != nil || len(out) != respOffMAC1 || cs1 == nil || cs2 == nil {
		clear(hs.LocalEphemeral().Private)
		return nil, nil, &PeerError{PeerID: id, Err: fmt.Errorf("writing response: %v", err)}
	}
	initiatorMAC1 := mac1Key(info.PublicKey)
	mac(resp[respOffMAC1:respOffMAC2], initiatorMAC1[:], resp[:respOffMAC1])
	// mac2 stays zero: v1 has no cookies toward initiators.

	if chosen == CipherNone {
		clear(hs.LocalEphemeral().Private)
		return resp, nil, &PeerError{PeerID: id, Err: cipherMismatch("peer offers %v, we accept %v", p.offer, accept)}
	}
	s = finish(hs, cs1, cs2, chosen, false)
	s.PeerID, s.PeerStatic, s.PSKTag = id, info.PublicKey, info.PresharedKey.Tag()
	s.LocalIndex, s.RemoteIndex = localIndex, p.sender
	return resp, s, nil
}

// admit applies the per-peer replay and rate rules of an authenticated
// initiation, and records it when it passes.
func (r *Responder) admit(id string, stamp tai64n) error {
	now := r.cfg.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.peers[id]
	if st == nil {
		r.peers[id] = &peerState{lastStamp: stamp, lastInit: now}
		return nil
	}
	switch c := bytes.Compare(stamp[:], st.lastStamp[:]); {
	case c == 0:
		return ErrReplay
	case c < 0:
		return ErrStaleTimestamp
	}
	if d := now.Sub(st.lastInit); d >= 0 && d < InitiationMinInterval {
		return fmt.Errorf("%w: %v since the last one, at most one per %v", ErrRateLimited, d, InitiationMinInterval)
	}
	st.lastStamp, st.lastInit = stamp, now
	return nil
}
