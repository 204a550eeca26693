package handshake

import (
	"encoding/binary"
	"fmt"
)

// MessageType returns byte 0 of a message for the tunnel's demultiplexer. ok is
// false unless the common header is well formed: at least HeaderLen bytes,
// version ProtocolVersion, reserved bytes zero. The type itself is not
// checked: reserved and unknown types are the caller's to drop.
func MessageType(msg []byte) (typ byte, ok bool) {
	if len(msg) < HeaderLen || msg[1] != ProtocolVersion || msg[2] != 0 || msg[3] != 0 {
		return 0, false
	}
	return msg[0], true
}

func putHeader(dst []byte, typ byte) {
	dst[0], dst[1], dst[2], dst[3] = typ, ProtocolVersion, 0, 0
}

// checkMessage verifies exact length and the header of a handshake message.
func checkMessage(msg []byte, typ byte, size int, what string) error {
	if len(msg) != size {
		return malformed("%s is %d bytes, want %d", what, len(msg), size)
	}
	if t, ok := MessageType(msg); !ok || t != typ {
		return malformed("%s header %x is not type %d version %d", what, msg[:HeaderLen], typ, ProtocolVersion)
	}
	return nil
}

// PeekResponseReceiver returns the receiver index of a response without any
// cryptography, so the tunnel can route it to its pending Initiation.
func PeekResponseReceiver(msg []byte) (receiverIndex uint32, ok bool) {
	if checkMessage(msg, MessageTypeResponse, ResponseSize, "response") != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(msg[respOffReceiver:]), true
}

// initPayload is the plaintext Noise payload of message 1.
type initPayload struct {
	sender uint32
	stamp  tai64n
	offer  cipherSet
	id     []byte // aliases the parsed buffer
}

func (p *initPayload) marshal(dst *[initPayloadLen]byte) {
	*dst = [initPayloadLen]byte{}
	binary.LittleEndian.PutUint32(dst[ipOffSender:], p.sender)
	copy(dst[ipOffTimestamp:], p.stamp[:])
	dst[ipOffCiphers] = byte(p.offer)
	dst[ipOffIDLen] = byte(len(p.id))
	copy(dst[ipOffID:], p.id)
}

// parseInitPayload reads message 1's payload. When the ID is readable but the
// rest is not, it returns the ID too, so the refusal can name the claimed peer.
func parseInitPayload(b []byte) (initPayload, error) {
	var p initPayload
	if len(b) != initPayloadLen {
		return p, malformed("initiation payload is %d bytes, want %d", len(b), initPayloadLen)
	}
	n := int(b[ipOffIDLen])
	if n == 0 || n > MaxPeerIDLen {
		return p, malformed("initiation peer ID length %d is not in 1..%d", n, MaxPeerIDLen)
	}
	p.id = b[ipOffID : ipOffID+n]
	if !isZero(b[ipOffID+n:]) {
		return p, malformed("initiation peer ID padding is not zero")
	}
	p.sender = binary.LittleEndian.Uint32(b[ipOffSender:])
	copy(p.stamp[:], b[ipOffTimestamp:])
	p.offer = cipherSet(b[ipOffCiphers])
	return p, nil
}

// respPayload is the plaintext Noise payload of message 2.
type respPayload struct {
	sender uint32
	chosen Cipher
	accept cipherSet
}

func (p *respPayload) marshal(dst *[respPayloadLen]byte) {
	binary.LittleEndian.PutUint32(dst[0:], p.sender)
	dst[4] = byte(p.chosen)
	dst[5] = byte(p.accept)
}

func parseRespPayload(b []byte) (respPayload, error) {
	var p respPayload
	if len(b) != respPayloadLen {
		return p, malformed("response payload is %d bytes, want %d", len(b), respPayloadLen)
	}
	p.sender = binary.LittleEndian.Uint32(b[0:])
	p.chosen = Cipher(b[4])
	p.accept = cipherSet(b[5])
	switch p.chosen {
	case CipherNone, CipherChaCha20Poly1305, CipherAES256GCM:
	default:
		return p, malformed("response chose unknown cipher %d", uint8(p.chosen))
	}
	return p, nil
}

func cipherMismatch(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCipherMismatch}, args...)...)
}
