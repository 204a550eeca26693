//go:build cgo

package pkcs11key

import (
	"crypto/hmac"
	"crypto/sha256"
	"time"
)

// After the token refuses the PIN of a running key (the PIN file was
// changed to a wrong PIN, say in the middle of a rotation, and the session
// was lost), each handshake would log in again with it: anyone who knows
// the public key can send initiations (mac1 is cheap), each a wrong PIN
// toward locking the token. So the key holds off: it does not log in with
// the same PIN again until the PIN file holds another PIN, or a back-off
// passes, growing from pinBackoffMin to pinBackoffMax with each refusal in
// a row; in between, SharedSecret returns the same one-line error at once.
// The token may still be changed to accept the file's PIN (its PIN set
// again by its officer), hence the back-off; but when the token says one
// more wrong PIN locks it, only a new PIN in the file lifts the hold.
//
// The PIN is never kept or logged: the hold compares a fingerprint of the
// file's contents, keyed by a random key of this Key. The error reaches the
// log through the tunnel's rate-limited handshake warnings, a line per
// reason every few seconds, not per handshake.
const (
	pinBackoffMin = 5 * time.Minute
	pinBackoffMax = time.Hour
)

// pinHold is a refused PIN that SharedSecret does not try again; zero:
// none.
type pinHold struct {
	refusals int       // refused logins in a row
	sum      [32]byte  // fingerprint of the last refused PIN
	until    time.Time // the back-off's end; zero: only a new PIN lifts the hold
	err      *Error    // returned while held
}

// pinBackoff is how long the token is left alone after the n-th refusal
// in a row.
func pinBackoff(n int) time.Duration {
	d := pinBackoffMin
	for ; n > 1 && d < pinBackoffMax; n-- {
		d *= 2
	}
	return min(d, pinBackoffMax)
}

// pinSum is the fingerprint of a PIN under this key's random key.
func (k *Key) pinSum(pin []byte) [32]byte {
	m := hmac.New(sha256.New, k.pinKey[:])
	m.Write(pin)
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// holdPINLocked starts (or extends) the hold after the token refused the
// PIN, and returns the error SharedSecret gives while it lasts.
func (k *Key) holdPINLocked(r *pinRefusal) error {
	h := &k.hold
	h.refusals++
	h.sum = r.sum
	wait := pinBackoff(h.refusals)
	h.until = k.now().Add(wait)
	switch {
	case r.locked:
		h.err = errorf(KindPIN, nil, "the PIN of %s is locked; unlock it with the token's SO PIN (stunnel tries again when the PIN file changes, or in %v)", k.tokenName(), wait)
	case r.finalTry:
		h.until = time.Time{}
		h.err = errorf(KindPIN, nil, "wrong PIN for %s (from %s), and one more locks the token; fix the PIN file (stunnel tries again only when it changes)", k.tokenName(), k.pinFile)
	default:
		h.err = errorf(KindPIN, nil, "wrong PIN for %s (from %s); fix the PIN file (stunnel tries again when it changes, or in %v; the token locks after too many wrong PINs)", k.tokenName(), k.pinFile, wait)
	}
	return h.err
}

// pinHeldLocked is the hold's error while the PIN file still holds the
// refused PIN and the back-off runs, else nil: log in.
func (k *Key) pinHeldLocked() error {
	h := &k.hold
	if h.refusals == 0 {
		return nil
	}
	if !h.until.IsZero() && !k.now().Before(h.until) {
		return nil // one more try; a refusal holds off longer
	}
	pin, err := readPIN(k.pinFile)
	if err != nil {
		return nil // openSession says why, without a login
	}
	sum := k.pinSum(pin)
	clear(pin)
	if !hmac.Equal(sum[:], h.sum[:]) {
		return nil // a new PIN: try it at once
	}
	return h.err
}
