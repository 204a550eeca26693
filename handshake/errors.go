package handshake

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every failure wraps exactly one of these (errors.Is), with
// detail in the text; none ever contains key material.
var (
	ErrMalformed       = errors.New("malformed handshake message")
	ErrBadMAC1         = errors.New("bad mac1 (message not addressed to our public key, or corrupted)")
	ErrBadMAC2         = errors.New("bad mac2")
	ErrBadCookie       = errors.New("cookie reply does not authenticate")
	ErrDecrypt         = errors.New("handshake does not authenticate (wrong key, corrupted or forged)")
	ErrUnknownPeer     = errors.New("unknown peer ID")
	ErrKeyMismatch     = errors.New("peer ID is known but its static key differs from the configured one")
	ErrStaleTimestamp  = errors.New("initiation timestamp is not newer than the last one accepted")
	ErrRateLimited     = errors.New("initiations from this peer are too frequent")
	ErrCipherMismatch  = errors.New("cipher mismatch")
	ErrWrongReceiver   = errors.New("response is for another handshake")
	ErrHandshakeDone   = errors.New("handshake already finished")
	ErrNoCookieWaiting = errors.New("cookie reply without an initiation waiting for one")
)

// ErrReplay is a replayed initiation: its timestamp equals the last accepted
// one. errors.Is(ErrReplay, ErrStaleTimestamp) is true.
var ErrReplay = fmt.Errorf("%w (replayed initiation)", ErrStaleTimestamp)

// ErrPSKMismatch refuses a ticket issued under another pre-shared key than
// the one configured now for its peer ID. errors.Is(ErrPSKMismatch,
// ErrKeyMismatch) holds, so it is counted and handled as a changed key;
// only the text differs (ErrKeyMismatch's speaks of the static key).
var ErrPSKMismatch error = &wrapText{
	text: "peer ID is known but its pre-shared key differs from the one the session ticket was issued under",
	err:  ErrKeyMismatch,
}

// wrapText is err under its own text.
type wrapText struct {
	text string
	err  error
}

func (e *wrapText) Error() string { return e.text }
func (e *wrapText) Unwrap() error { return e.err }

// PeerError is a refusal after the claimed peer ID was decrypted: the tunnel
// records refusals by claimed ID. The ID is untrusted input; print it with %q.
type PeerError struct {
	PeerID string
	Err    error
}

func (e *PeerError) Error() string { return fmt.Sprintf("peer %q: %v", e.PeerID, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
