package handshake

import (
	"fmt"
	"io"
	"strconv"
)

// What the types that hold raw key material print. fmt prints a struct
// field by field, an array byte by byte, and unexported fields without
// their own String or Format, so a Session passed to a logger or an error
// by mistake would show its data keys, and encoding/json would write them
// as lists of numbers. Each of these prints only what names it, whatever
// the verb, and the data types encode as that text too. (PrivateKey and
// PresharedKey: keys.go.)

func (s *Session) text() string {
	return "(session with " + strconv.Quote(s.PeerID) + ", " + s.Cipher.String() + ": keys not shown)"
}

// Format prints the peer and cipher, never the keys, session ID or
// resumption secret.
func (s Session) Format(f fmt.State, _ rune) { io.WriteString(f, s.text()) }

// MarshalText keeps encoders from writing the keys.
func (s Session) MarshalText() ([]byte, error) { return []byte(s.text()), nil }

func (st *TicketState) text() string {
	return "(ticket state of " + strconv.Quote(st.PeerID) + ": secret not shown)"
}

// Format prints the peer, never the resumption secret.
func (st TicketState) Format(f fmt.State, _ rune) { io.WriteString(f, st.text()) }

// MarshalText keeps encoders from writing the resumption secret.
func (st TicketState) MarshalText() ([]byte, error) { return []byte(st.text()), nil }

// Format prints the peer, never the ephemeral or pre-shared key.
func (i *Initiation) Format(f fmt.State, _ rune) {
	io.WriteString(f, "(initiation to "+strconv.Quote(i.peerID)+": keys not shown)")
}

// Format prints the peer, never the ephemeral key or the ticket's PSK.
func (r *Resumption) Format(f fmt.State, _ rune) {
	io.WriteString(f, "(resumption to "+strconv.Quote(r.peerID)+": keys not shown)")
}
