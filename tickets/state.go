// Package tickets seals and opens session tickets (handshake.TicketState)
// under ticket keys managed as s2n-tls manages its session ticket keys: each
// key seals and opens for its encrypt-decrypt lifetime, then only opens for its
// decrypt-only lifetime, then is erased. docs/PROTOCOL.md section 10 gives the
// ticket format byte by byte; docs/CONFIGURATION.md the [tickets] table and the
// key file.
package tickets

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"stunnel/handshake"
)

// Ticket layout (format 1):
//
//	0   1   format version, 1
//	1   16  key name
//	17  24  nonce, random per ticket (tickets are unlinkable)
//	41  235 XChaCha20-Poly1305(key secret, nonce, ad = bytes 0..17, state)
//
// 276 bytes in all, with a state of version 3. Tickets sealed before the
// state named its responder (244 bytes, state version 2; 212, version 1)
// are refused by their length, before any decryption: they would resume
// at any identity sharing the key (the initiator makes a full handshake
// instead, once).
const (
	ticketVersion = 1
	// NameSize is the length of a ticket key name.
	NameSize = 16
	// SecretSize is the length of a ticket key secret.
	SecretSize = 32

	offName    = 1
	offNonce   = offName + NameSize                               // 17
	offSealed  = offNonce + chacha20poly1305.NonceSizeX           // 41
	stateLen   = offResponder + 32                                // 219
	TicketSize = offSealed + stateLen + chacha20poly1305.Overhead // 276
	// The sizes of the tickets of state versions 2 and 1, now refused.
	ticketSizeV2 = offSealed + offResponder + chacha20poly1305.Overhead // 244
	ticketSizeV1 = offSealed + offPSKTag + chacha20poly1305.Overhead    // 212
)

// State plaintext (version 3), times as Unix nanoseconds, signed LE:
//
//	0   1   state version, 3
//	1   1   cipher (handshake.Cipher)
//	2   8   issued at
//	10  8   auth time (last static-key proof)
//	18  8   expiry
//	26  32  peer static public key
//	58  32  resumption secret
//	90  1   peer ID length L, 1..64
//	91  64  peer ID, then 64-L zero bytes (fixed size: the ID length does not show)
//	155 32  PSK tag (handshake.PresharedKey.Tag of the pair's PSK at issue)
//	187 32  responder static public key (the identity that issued the ticket)
//
// Version 2 lacked the responder key, version 1 the PSK tag too.
const (
	stateVersion = 3
	offPeerID    = 91
	offPSKTag    = offPeerID + handshake.MaxPeerIDLen // 155
	offResponder = offPSKTag + 32                     // 187
)

// encodeState writes st as a version 3 state. A st without HasPSKTag gets
// the zero tag, which no pre-shared key has, and one without
// ResponderStatic the zero key, which the responder refuses: such a ticket
// is refused, never taken for one that skips a check.
func encodeState(dst *[stateLen]byte, st *handshake.TicketState) error {
	if err := handshake.ValidatePeerID([]byte(st.PeerID)); err != nil {
		return fmt.Errorf("ticket: %w", err)
	}
	*dst = [stateLen]byte{}
	dst[0] = stateVersion
	dst[1] = byte(st.Cipher)
	binary.LittleEndian.PutUint64(dst[2:], uint64(st.IssuedAt.UnixNano()))
	binary.LittleEndian.PutUint64(dst[10:], uint64(st.AuthTime.UnixNano()))
	binary.LittleEndian.PutUint64(dst[18:], uint64(st.Expiry.UnixNano()))
	copy(dst[26:58], st.PeerStatic[:])
	copy(dst[58:90], st.ResumptionSecret[:])
	dst[90] = byte(len(st.PeerID))
	copy(dst[offPeerID:], st.PeerID)
	if st.HasPSKTag {
		copy(dst[offPSKTag:], st.PSKTag[:])
	}
	copy(dst[offResponder:], st.ResponderStatic[:])
	return nil
}

// decodeState reads a state of version 3.
func decodeState(b []byte) (*handshake.TicketState, error) {
	if len(b) != stateLen || b[0] != stateVersion {
		return nil, fmt.Errorf("%w: unknown state version", handshake.ErrTicketInvalid)
	}
	n := int(b[90])
	if n == 0 || n > handshake.MaxPeerIDLen || !allZero(b[offPeerID+n:offPSKTag]) {
		return nil, fmt.Errorf("%w: bad peer ID length", handshake.ErrTicketInvalid)
	}
	st := &handshake.TicketState{
		Cipher:    handshake.Cipher(b[1]),
		IssuedAt:  time.Unix(0, int64(binary.LittleEndian.Uint64(b[2:]))),
		AuthTime:  time.Unix(0, int64(binary.LittleEndian.Uint64(b[10:]))),
		Expiry:    time.Unix(0, int64(binary.LittleEndian.Uint64(b[18:]))),
		PeerID:    string(b[offPeerID : offPeerID+n]),
		HasPSKTag: true,
	}
	copy(st.PeerStatic[:], b[26:58])
	copy(st.ResumptionSecret[:], b[58:90])
	copy(st.PSKTag[:], b[offPSKTag:offResponder])
	copy(st.ResponderStatic[:], b[offResponder:])
	return st, nil
}

func allZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}

// seal writes a ticket for st under k.
func seal(k *Key, st *handshake.TicketState, rng io.Reader) ([]byte, error) {
	var plain [stateLen]byte
	defer clear(plain[:])
	if err := encodeState(&plain, st); err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k.secret[:])
	if err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	t := make([]byte, offSealed, TicketSize)
	t[0] = ticketVersion
	copy(t[offName:], k.Name[:])
	if rng == nil {
		rng = rand.Reader
	}
	if _, err := io.ReadFull(rng, t[offNonce:offSealed]); err != nil {
		return nil, fmt.Errorf("ticket nonce: reading randomness: %w", err)
	}
	return aead.Seal(t, t[offNonce:offSealed], plain[:], t[:offNonce]), nil
}

// open authenticates and decodes a ticket whose name matched k.
func open(k *Key, ticket []byte) (*handshake.TicketState, error) {
	aead, err := chacha20poly1305.NewX(k.secret[:])
	if err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	var buf [stateLen]byte
	defer clear(buf[:])
	plain, err := aead.Open(buf[:0], ticket[offNonce:offSealed], ticket[offSealed:], ticket[:offNonce])
	if err != nil {
		return nil, fmt.Errorf("%w", handshake.ErrTicketInvalid)
	}
	return decodeState(plain)
}

// ticketName returns the key name of a well-framed ticket.
func ticketName(ticket []byte) (name [NameSize]byte, err error) {
	if (len(ticket) == ticketSizeV2 || len(ticket) == ticketSizeV1) && ticket[0] == ticketVersion {
		return name, fmt.Errorf("%w: a ticket of an older version (%d bytes), which does not name the identity that issued it: no longer accepted",
			handshake.ErrTicketInvalid, len(ticket))
	}
	if len(ticket) != TicketSize || ticket[0] != ticketVersion {
		return name, fmt.Errorf("%w: %d bytes with version %d, want %d bytes with version %d",
			handshake.ErrTicketInvalid, len(ticket), firstByte(ticket), TicketSize, ticketVersion)
	}
	copy(name[:], ticket[offName:offNonce])
	return name, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}
