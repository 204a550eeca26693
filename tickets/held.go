package tickets

import (
	"bytes"
	"fmt"
	"time"

	"stunnel/handshake"
)

// UsableMargin: an initiator stops offering a ticket this long before its
// expiry, so it does not expire in flight (the lifetime is relative, so
// clock offsets between the hosts do not matter, only delays).
const UsableMargin = 30 * time.Second

// Held is the initiator's ticket for one peer: the ticket, the resumption
// secret of the session that delivered it, and when it expires. The owner
// (the per-peer session state) guards it; it is not safe for concurrent use.
// It is used at most once: Take hands it out and empties it.
type Held struct {
	ticket   []byte
	secret   [32]byte
	Received time.Time
	Expiry   time.Time
}

// NewHeld reads a new-ticket control message (the decrypted plaintext of a
// data packet, handshake.IsControlMessage) received under sess at now.
func NewHeld(plain []byte, sess *handshake.Session, now time.Time) (*Held, error) {
	tk, life, err := handshake.ParseTicketMessage(plain)
	if err != nil {
		return nil, err
	}
	if sess == nil || sess.ResumptionSecret == [32]byte{} {
		return nil, fmt.Errorf("ticket received under a session without a resumption secret")
	}
	return &Held{ticket: bytes.Clone(tk), secret: sess.ResumptionSecret, Received: now, Expiry: now.Add(life)}, nil
}

// Usable reports whether the ticket may be offered at now.
func (h *Held) Usable(now time.Time) bool {
	return h != nil && len(h.ticket) > 0 && now.Before(h.Expiry.Add(-UsableMargin))
}

// Take returns the ticket and its secret for handshake.NewResumption and
// empties h: a ticket is offered once (a refusal gets no answer, so the next
// attempt must be a full handshake). The caller zeroes secret after use.
func (h *Held) Take() (ticket []byte, secret [32]byte, ok bool) {
	if h == nil || len(h.ticket) == 0 {
		return nil, secret, false
	}
	ticket, secret = h.ticket, h.secret
	h.ticket = nil
	h.Zero()
	return ticket, secret, true
}

// Zero wipes the secret and drops the ticket.
func (h *Held) Zero() {
	if h == nil {
		return
	}
	clear(h.secret[:])
	h.ticket = nil
}
