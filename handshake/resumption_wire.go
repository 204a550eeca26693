package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/hkdf"
)

// Session resumption: the wire layout of messages 5 and 6, the key schedule
// around them and the refusals. docs/PROTOCOL.md section 10 is the reference.

// MaxTicketLen bounds a ticket on the wire (message 5, the new-ticket message).
// stunnel's own tickets are 276 bytes (tickets/); the bound leaves room for
// a later ticket format without letting a peer make us parse kilobytes.
const MaxTicketLen = 512

// Message 5 (resumption initiation), T = ticket length:
// header | T (2, LE) | ticket | e (32) | sealed payload (17+16) | mac1 | mac2.
const (
	resumePayloadLen = indexLen + tai64nLen + 1 // 17: sender, timestamp, cipher offer

	resumeOffTicketLen = HeaderLen                           // 4
	resumeOffTicket    = resumeOffTicketLen + 2              // 6
	resumeTailLen      = keyLen + resumePayloadLen + TagSize // 65: after the ticket, before mac1
	// ResumptionOverhead is the size of message 5 minus its ticket: 103.
	ResumptionOverhead = resumeOffTicket + resumeTailLen + 2*macLen
	// MinResumptionSize and MaxResumptionSize bound message 5.
	MinResumptionSize = ResumptionOverhead + 1
	MaxResumptionSize = ResumptionOverhead + MaxTicketLen
)

// Message 6 (resumption response) has message 2's layout and size with type 6.
const ResumptionResponseSize = ResponseSize

// Labels of the resumption key schedule.
const (
	resumeProtocolName    = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s" // what flynn/noise builds below
	resumePrologue        = "stunnel v1 resumption"
	labelResumptionSecret = "stunnel v1 resumption secret"
	labelResumptionPSK    = "stunnel v1 resumption psk"
)

// The new-ticket message, the plaintext of a data packet (type 4):
// 0x01 | kind 1 | lifetime seconds (4, LE) | T (2, LE) | ticket.
const (
	// ControlMarker is byte 0 of a data plaintext that is a control message,
	// not an IP packet (those start with 0x4_ or 0x6_; a keepalive is empty).
	ControlMarker = 0x01
	// ControlKindNewTicket is byte 1 of a new-ticket control message.
	ControlKindNewTicket = 0x01
	ticketMsgHeaderLen   = 8
	// MaxTicketLifetime is the largest lifetime the message can carry.
	MaxTicketLifetime = time.Duration(1<<32-1) * time.Second
)

// Refusals of a resumption. Each falls back to a full handshake; the tunnel
// counts and logs them by sentinel. ErrStaleTimestamp, ErrReplay,
// ErrUnknownPeer (peer removed), ErrKeyMismatch (its static key changed;
// ErrPSKMismatch, which wraps it: its pre-shared key), ErrDecrypt,
// ErrBadMAC1 and ErrMalformed apply too.
var (
	ErrTicketExpired    = errors.New("session ticket expired (its own expiry or its key's decrypt-only life has passed)")
	ErrTicketKeyUnknown = errors.New("session ticket names a ticket key we do not have")
	ErrTicketInvalid    = errors.New("session ticket does not authenticate (tampered or corrupted)")
	ErrTicketReused     = errors.New("session ticket was already used")
	ErrReauthRequired   = errors.New("session ticket's last static-key proof is older than reauth_after: a full handshake is required")
)

// TicketState is what a ticket carries, sealed by the responder's ticket key
// (package tickets encodes it). Every field is secret inside the ticket; only
// ResumptionSecret is key material. Zero it when done.
type TicketState struct {
	PeerID           string    // the initiator's peer ID: travels only inside the ticket
	PeerStatic       PublicKey // its static key as configured when the ticket was issued
	ResumptionSecret [32]byte  // the issuing session's Session.ResumptionSecret
	Cipher           Cipher    // the issuing session's cipher (informational)
	IssuedAt         time.Time
	AuthTime         time.Time // when the static keys were last proven (a full handshake)
	Expiry           time.Time // never after the end of the sealing key's decrypt-only life
	// PSKTag is the issuing session's Session.PSKTag: the pair's
	// pre-shared key then. The responder refuses the ticket once the
	// pre-shared key configured for PeerID has another tag, as it does
	// once the static key differs: rotating the PSK on both ends revokes
	// the old one for resumptions too. HasPSKTag false (an opener whose
	// tickets carry no tag; package tickets' always do) skips this check.
	PSKTag    [32]byte
	HasPSKTag bool
	// ResponderStatic is the static public key of the responder that
	// issued the ticket. A responder resumes only the tickets that name its
	// own key: gateways of another identity that share the ticket keys
	// would otherwise answer, as if they were the issuer, a resumption the
	// initiator meant for it. Zero (an opener that does not set it) is
	// refused.
	ResponderStatic PublicKey
}

// Zero wipes the resumption secret.
func (st *TicketState) Zero() { st.ResumptionSecret = [32]byte{} }

// TicketOpener is the responder's ticket store (tickets.Ring implements it).
type TicketOpener interface {
	// OpenTicket authenticates and decrypts a ticket and checks its key, its
	// expiry and reauth_after, with no side effect. Errors wrap
	// ErrTicketKeyUnknown, ErrTicketInvalid, ErrTicketExpired or ErrReauthRequired.
	OpenTicket(ticket []byte) (*TicketState, error)
	// ConsumeTicket records the ticket as used until st.Expiry; a second
	// call for the same ticket returns an error wrapping ErrTicketReused.
	ConsumeTicket(ticket []byte, st *TicketState) error
}

// resumptionSecret = HKDF(salt = empty, IKM = k1 || k2, info = label || h):
// from the final chaining key (through Noise's Split) and bound to the
// transcript. The data keys use other labels on k1 and k2 alone, so neither
// can be computed from the other.
func resumptionSecret(dst *[32]byte, k1, k2 *[32]byte, h []byte) {
	var ikm [64]byte
	copy(ikm[:32], k1[:])
	copy(ikm[32:], k2[:])
	info := make([]byte, 0, len(labelResumptionSecret)+len(h))
	info = append(append(info, labelResumptionSecret...), h...)
	_, _ = io.ReadFull(hkdf.New(newBLAKE2s, ikm[:], nil, info), dst[:])
	clear(ikm[:])
}

// resumptionPSK = HKDF(salt = the pair's configured PSK (zero: none), IKM =
// resumption secret, info = label): the Noise psk0 of one ticket. Mixing the
// configured PSK keeps its hedge and makes a changed PSK refuse old tickets.
func resumptionPSK(dst *[32]byte, secret *[32]byte, pairPSK *PresharedKey) {
	_, _ = io.ReadFull(hkdf.New(newBLAKE2s, secret[:], pairPSK[:], []byte(labelResumptionPSK)), dst[:])
}

// newResumeNoise starts one side of Noise_NNpsk0 with prologue =
// "stunnel v1 resumption" || message 5's bytes up to the ticket's end, so the
// handshake hash covers the ticket.
func newResumeNoise(initiator bool, rng io.Reader, prefix []byte, psk *[32]byte) (*noise.HandshakeState, error) {
	pro := make([]byte, 0, len(resumePrologue)+len(prefix))
	pro = append(append(pro, resumePrologue...), prefix...)
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:           cipherSuite,
		Random:                rng,
		Pattern:               noise.HandshakeNN,
		Initiator:             initiator,
		Prologue:              pro,
		PresharedKey:          psk[:],
		PresharedKeyPlacement: 0,
	})
}

// resumeTicketLen checks message 5's framing and returns its ticket length.
func resumeTicketLen(msg []byte) (int, error) {
	if len(msg) < MinResumptionSize || len(msg) > MaxResumptionSize {
		return 0, malformed("resumption is %d bytes, want %d..%d", len(msg), MinResumptionSize, MaxResumptionSize)
	}
	if t, ok := MessageType(msg); !ok || t != MessageTypeResumptionInitiation {
		return 0, malformed("resumption header %x is not type %d version %d", msg[:HeaderLen], MessageTypeResumptionInitiation, ProtocolVersion)
	}
	n := int(binary.LittleEndian.Uint16(msg[resumeOffTicketLen:]))
	if n == 0 || n > MaxTicketLen || len(msg) != ResumptionOverhead+n {
		return 0, malformed("resumption ticket length %d does not match its size %d", n, len(msg))
	}
	return n, nil
}

// ParseResumption splits message 5 without cryptography: the ticket (aliasing
// msg) and the offset of mac1. For the demultiplexer and fuzzing.
func ParseResumption(msg []byte) (ticket []byte, mac1Off int, err error) {
	n, err := resumeTicketLen(msg)
	if err != nil {
		return nil, 0, err
	}
	return msg[resumeOffTicket : resumeOffTicket+n], len(msg) - 2*macLen, nil
}

// PeekResumptionResponseReceiver returns message 6's receiver index without
// cryptography, so the tunnel can route it to its pending Resumption.
func PeekResumptionResponseReceiver(msg []byte) (receiverIndex uint32, ok bool) {
	if checkMessage(msg, MessageTypeResumptionResponse, ResumptionResponseSize, "resumption response") != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(msg[respOffReceiver:]), true
}

// resumptionMACOffsets is macOffsets for types 5 and 6.
func resumptionMACOffsets(msg []byte, typ byte) (mac1, mac2 int, ok bool) {
	switch typ {
	case MessageTypeResumptionInitiation:
		if _, err := resumeTicketLen(msg); err != nil {
			return 0, 0, false
		}
	case MessageTypeResumptionResponse:
		if len(msg) != ResumptionResponseSize {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}
	return len(msg) - 2*macLen, len(msg) - macLen, true
}

// resumePayload is message 5's plaintext Noise payload.
type resumePayload struct {
	sender uint32
	stamp  tai64n
	offer  cipherSet
}

func (p *resumePayload) marshal(dst *[resumePayloadLen]byte) {
	binary.LittleEndian.PutUint32(dst[0:], p.sender)
	copy(dst[4:], p.stamp[:])
	dst[16] = byte(p.offer)
}

func parseResumePayload(b []byte) (resumePayload, error) {
	var p resumePayload
	if len(b) != resumePayloadLen {
		return p, malformed("resumption payload is %d bytes, want %d", len(b), resumePayloadLen)
	}
	p.sender = binary.LittleEndian.Uint32(b)
	copy(p.stamp[:], b[4:])
	p.offer = cipherSet(b[16])
	return p, nil
}

// MarshalTicketMessage builds the new-ticket control message that a responder
// sends, sealed as the plaintext of a data packet, after a handshake. lifetime
// is how long the ticket stays valid from now (rounded down to seconds).
func MarshalTicketMessage(ticket []byte, lifetime time.Duration) ([]byte, error) {
	if len(ticket) == 0 || len(ticket) > MaxTicketLen {
		return nil, fmt.Errorf("ticket is %d bytes, want 1..%d", len(ticket), MaxTicketLen)
	}
	if lifetime < time.Second || lifetime > MaxTicketLifetime {
		return nil, fmt.Errorf("ticket lifetime %v is not in 1s..%v", lifetime, MaxTicketLifetime)
	}
	m := make([]byte, ticketMsgHeaderLen+len(ticket))
	m[0], m[1] = ControlMarker, ControlKindNewTicket
	binary.LittleEndian.PutUint32(m[2:], uint32(lifetime/time.Second))
	binary.LittleEndian.PutUint16(m[6:], uint16(len(ticket)))
	copy(m[ticketMsgHeaderLen:], ticket)
	return m, nil
}

// IsControlMessage reports whether a decrypted data plaintext is a control
// message (byte 0 is ControlMarker) rather than an IP packet or a keepalive.
func IsControlMessage(plain []byte) bool { return len(plain) > 0 && plain[0] == ControlMarker }

// ParseTicketMessage reads a new-ticket control message. The ticket aliases
// msg: copy it to keep it. Errors wrap ErrMalformed.
func ParseTicketMessage(msg []byte) (ticket []byte, lifetime time.Duration, err error) {
	if len(msg) < ticketMsgHeaderLen+1 {
		return nil, 0, malformed("ticket message is %d bytes, want at least %d", len(msg), ticketMsgHeaderLen+1)
	}
	if msg[0] != ControlMarker || msg[1] != ControlKindNewTicket {
		return nil, 0, malformed("control message %#02x kind %d is not a new ticket", msg[0], msg[1])
	}
	secs := binary.LittleEndian.Uint32(msg[2:])
	n := int(binary.LittleEndian.Uint16(msg[6:]))
	if secs == 0 {
		return nil, 0, malformed("ticket message lifetime is zero")
	}
	if n == 0 || n > MaxTicketLen || len(msg) != ticketMsgHeaderLen+n {
		return nil, 0, malformed("ticket message ticket length %d does not match its size %d (at most %d)", n, len(msg), MaxTicketLen)
	}
	return msg[ticketMsgHeaderLen:], time.Duration(secs) * time.Second, nil
}
