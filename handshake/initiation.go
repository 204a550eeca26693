package handshake

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/flynn/noise"
)

// Initiation is one pending handshake toward one peer: it builds message 1 and
// consumes the matching message 2. Use a new Initiation for each attempt (each
// has a fresh ephemeral key and timestamp). Safe for concurrent use.
//
// Sending: msg := init.Message(); cookieGen.AddMACs(msg); send msg. After a
// cookie reply (cookieGen.ConsumeReply) the same or a new initiation is sent
// again through AddMACs, which then fills mac2.
type Initiation struct {
	// Immutable after NewInitiation, but for peer.PresharedKey, which
	// finishLocked zeroes under mu (only writeMessage1 reads it, under mu
	// or before the Initiation is shared).
	peer       PeerInfo
	peerID     string
	local      localKeys
	localIndex uint32
	offer      cipherSet
	msg        [InitiationSize]byte // message 1 with both MACs zero

	mu     sync.Mutex
	hs     *noise.HandshakeState // guarded by mu; nil once finished
	static StaticKey             // guarded by mu: our static key; nil once finished
	owned  *memoryKey            // guarded by mu: key when made from Config.PrivateKey, zeroed when finished
	eph    [KeySize]byte         // guarded by mu: ephemeral private key, kept to rebuild hs
	plain  [initPayloadLen]byte  // guarded by mu: message 1's payload, kept to rebuild hs
	done   bool                  // guarded by mu
}

// NewInitiation starts a handshake from cfg to peer. localIndex is the index
// the peer will put in packets to us (the tunnel picks it at random, unique
// among its sessions). peer.ID, when set, becomes Session.PeerID.
func NewInitiation(cfg *Config, peer PeerInfo, localIndex uint32) (*Initiation, error) {
	if err := ValidatePeerID(cfg.PeerID); err != nil {
		return nil, fmt.Errorf("our %w", err)
	}
	key, local, owned, err := cfg.staticKey()
	if err != nil {
		return nil, err
	}
	if peer.PublicKey.IsZero() {
		if owned != nil {
			owned.priv.Zero()
		}
		return nil, errors.New("peer public key is not set")
	}
	i := &Initiation{
		peer:       peer,
		peerID:     peer.ID,
		local:      local,
		localIndex: localIndex,
		offer:      localCipherSet(cfg.Cipher, cfg.aesHardware()),
		static:     key,
		owned:      owned,
	}
	if _, err := io.ReadFull(cfg.rand(), i.eph[:]); err != nil {
		i.Zero()
		return nil, fmt.Errorf("ephemeral key: reading randomness: %w", err)
	}
	p := initPayload{sender: localIndex, stamp: nextTimestamp(cfg.now()), offer: i.offer, id: cfg.PeerID}
	p.marshal(&i.plain)
	hs, err := i.writeMessage1(i.msg[:], &i.plain)
	if err != nil {
		i.Zero()
		return nil, err
	}
	i.hs = hs
	return i, nil
}

// writeMessage1 runs the Noise side of message 1 into dst (InitiationSize
// bytes). It is deterministic given i.eph, so it can rebuild a Noise state that
// a failed ReadMessage left corrupted (flynn/noise rolls back only part of it).
func (i *Initiation) writeMessage1(dst []byte, plain *[initPayloadLen]byte) (*noise.HandshakeState, error) {
	hs, err := newNoiseStatic(true, bytes.NewReader(i.eph[:]), i.static, i.local.pub, i.peer.PublicKey[:], i.peer.PresharedKey[:])
	if err != nil {
		return nil, fmt.Errorf("starting handshake: %w", err)
	}
	putHeader(dst, MessageTypeInitiation)
	out, _, _, err := hs.WriteMessage(dst[:HeaderLen], plain[:])
	if errors.Is(err, ErrStaticKey) {
		return nil, fmt.Errorf("writing initiation: %w", err) // our key failed, not the peer's
	}
	if err != nil {
		return nil, fmt.Errorf("writing initiation (is the peer public key valid?): %w", err)
	}
	if len(out) != initOffMAC1 {
		return nil, fmt.Errorf("writing initiation: Noise produced %d bytes, want %d", len(out), initOffMAC1)
	}
	clear(dst[initOffMAC1:])
	return hs, nil
}

// Message returns a new copy of message 1 with mac1 and mac2 zero: pass it
// through the peer's CookieGenerator.AddMACs before sending.
func (i *Initiation) Message() []byte {
	m := make([]byte, InitiationSize)
	copy(m, i.msg[:])
	return m
}

// LocalIndex is the index this initiation put in message 1.
func (i *Initiation) LocalIndex() uint32 { return i.localIndex }

// ConsumeResponse authenticates message 2 and, on success, returns the
// session. Failures before authentication (ErrMalformed, ErrWrongReceiver,
// ErrBadMAC1, ErrDecrypt) leave the initiation waiting for the genuine
// response; after an authenticated response it is finished (ErrHandshakeDone),
// also when the responder refused every cipher we offered (ErrCipherMismatch).
func (i *Initiation) ConsumeResponse(msg []byte) (*Session, error) {
	if err := checkResponseFrame(msg, MessageTypeResponse, ResponseSize, "response", i.localIndex, &i.local.mac1Key); err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.done {
		return nil, ErrHandshakeDone
	}
	s, readErr, err := completeResponse(i.hs, msg, i.offer, 2)
	if readErr != nil {
		i.rebuildLocked()
		return nil, errForged(readErr)
	}
	i.finishLocked()
	if err != nil {
		return nil, err
	}
	s.PeerID = i.peerID
	s.LocalIndex = i.localIndex
	return s, nil
}

// rebuildLocked restores the Noise state to "message 1 sent" after a forged or
// corrupted response. If that fails (it cannot, short of memory corruption),
// the initiation is finished rather than left inconsistent.
func (i *Initiation) rebuildLocked() {
	var scratch [InitiationSize]byte
	hs, err := i.writeMessage1(scratch[:], &i.plain)
	if err != nil || !bytes.Equal(scratch[:initOffMAC1], i.msg[:initOffMAC1]) {
		i.finishLocked()
		return
	}
	clear(i.hs.LocalEphemeral().Private)
	i.hs = hs
}

func (i *Initiation) finishLocked() {
	if i.hs != nil {
		clear(i.hs.LocalEphemeral().Private)
	}
	i.hs = nil
	i.done = true
	i.static = nil
	if i.owned != nil {
		i.owned.priv.Zero()
	}
	clear(i.eph[:])
	clear(i.plain[:])
	// The PSK copy was kept to rebuild hs; the peer's own copy is zeroed
	// when the peer goes (session.Peer.ZeroSecrets), which never reaches
	// this one.
	i.peer.PresharedKey.Zero()
}

// Zero abandons the initiation (timed out, peer removed) and wipes its secrets.
func (i *Initiation) Zero() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.finishLocked()
}
