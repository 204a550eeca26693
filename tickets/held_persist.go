package tickets

import (
	"encoding/binary"
	"errors"
	"time"

	"stunnel/handshake"
)

// A held ticket survives an initiator's restart through the state file (the
// state issue's code stores these bytes; they contain the resumption secret,
// so that file must be as private as a key file). Format 1:
//
//	0   1   version, 1
//	1   8   received, Unix nanoseconds, signed LE
//	9   8   expiry, Unix nanoseconds, signed LE
//	17  32  resumption secret
//	49  2   ticket length T, 1..handshake.MaxTicketLen, LE
//	51  T   ticket
const heldHeaderLen = 51

var errHeldFormat = errors.New("held ticket: malformed state bytes")

// MarshalBinary encodes h with its secret (see above). Zero the result when written.
func (h *Held) MarshalBinary() ([]byte, error) {
	if h == nil || len(h.ticket) == 0 {
		return nil, errors.New("held ticket: nothing held")
	}
	b := make([]byte, heldHeaderLen, heldHeaderLen+len(h.ticket))
	b[0] = 1
	binary.LittleEndian.PutUint64(b[1:], uint64(h.Received.UnixNano()))
	binary.LittleEndian.PutUint64(b[9:], uint64(h.Expiry.UnixNano()))
	copy(b[17:49], h.secret[:])
	binary.LittleEndian.PutUint16(b[49:], uint16(len(h.ticket)))
	return append(b, h.ticket...), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote. The caller checks
// Usable(now) before offering the ticket: it may have expired while we were down.
func (h *Held) UnmarshalBinary(b []byte) error {
	if len(b) < heldHeaderLen+1 || b[0] != 1 {
		return errHeldFormat
	}
	n := int(binary.LittleEndian.Uint16(b[49:]))
	if n == 0 || n > handshake.MaxTicketLen || len(b) != heldHeaderLen+n {
		return errHeldFormat
	}
	var secret [32]byte
	copy(secret[:], b[17:49])
	if secret == [32]byte{} {
		return errHeldFormat
	}
	h.Zero()
	h.Received = time.Unix(0, int64(binary.LittleEndian.Uint64(b[1:])))
	h.Expiry = time.Unix(0, int64(binary.LittleEndian.Uint64(b[9:])))
	h.secret = secret
	h.ticket = append([]byte(nil), b[heldHeaderLen:]...)
	return nil
}
