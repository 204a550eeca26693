package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flynn/noise"
)

// What an initiator does with the answer to its message 1 or 5 (messages 2
// and 6 have the same layout), shared by Initiation and Resumption.

// checkResponseFrame is every check of a response before any cryptography:
// type and length, our receiver index, mac1, and mac2 (all zero in v1).
func checkResponseFrame(msg []byte, typ byte, size int, what string, localIndex uint32, mac1Key *[32]byte) error {
	if err := checkMessage(msg, typ, size, what); err != nil {
		return err
	}
	if idx := binary.LittleEndian.Uint32(msg[respOffReceiver:]); idx != localIndex {
		return fmt.Errorf("%w: receiver index %#08x, ours is %#08x", ErrWrongReceiver, idx, localIndex)
	}
	if !checkMAC1(mac1Key, msg, respOffMAC1) {
		return ErrBadMAC1
	}
	if !isZero(msg[respOffMAC2:]) {
		return fmt.Errorf("%w: a v1 %s carries an all-zero mac2", ErrBadMAC2, what)
	}
	return nil
}

// completeResponse reads an authenticated-looking response with hs. When
// readErr is set the response did not authenticate: hs is spent and the
// caller rebuilds it to keep waiting for the genuine one. Otherwise the
// handshake is over, with a session (PeerID and indices left to the
// caller) or err.
func completeResponse(hs *noise.HandshakeState, msg []byte, offer cipherSet, afterMessage int) (s *Session, readErr, err error) {
	var plainBuf [respPayloadLen]byte
	plain, cs1, cs2, readErr := hs.ReadMessage(plainBuf[:0], msg[respOffEphemeral:respOffMAC1])
	if readErr != nil {
		return nil, readErr, nil
	}
	if cs1 == nil || cs2 == nil {
		return nil, nil, fmt.Errorf("handshake: Noise did not complete after message %d", afterMessage)
	}
	p, err := parseRespPayload(plain)
	if err != nil {
		return nil, nil, err
	}
	if p.chosen == CipherNone {
		return nil, nil, cipherMismatch("we offer %v, peer accepts %v", offer, p.accept)
	}
	if !offer.has(p.chosen) {
		// An authenticated choice outside our offer makes no session:
		// docs/PROTOCOL.md 4.4 and section 8 call it a cipher mismatch, so
		// the session layer abandons the attempt and reports it as such
		// (as malformed it stayed pending, unreported, until the retry).
		return nil, nil, cipherMismatch("we offer %v, peer chose %v, which we did not offer (peer accepts %v)", offer, p.chosen, p.accept)
	}
	s = finish(hs, cs1, cs2, p.chosen, true)
	s.RemoteIndex = p.sender
	return s, nil, nil
}

// errForged is what a response that did not authenticate returns: a token
// failure says so; anything else is a forgery or corruption.
func errForged(readErr error) error {
	if errors.Is(readErr, ErrStaticKey) {
		return readErr
	}
	return ErrDecrypt
}
