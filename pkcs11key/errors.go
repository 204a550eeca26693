package pkcs11key

import "fmt"

// Kind says what went wrong with a token key, so `stunnel up` and `check`
// can say which and what to do (exit 2: the configuration names a key that
// cannot be used; except that up exits 1 for KindToken, a token not there
// yet, and KindRuntime, one that did not answer within Open's deadline, so
// the unit restarts it: cmd/stunnel tokenOpenExit). Several tokens
// that match the URI (KindAmbiguous) are the configuration's fault: a
// restart finds them all again.
type Kind int

const (
	KindUnsupported Kind = iota + 1 // this build has no PKCS#11 support
	KindModule                      // the module does not exist or does not load
	KindToken                       // no token matches the URI, or it cannot be opened
	KindAmbiguous                   // more than one token matches the URI: the URI must say which
	KindPIN                         // PIN missing, unreadable, wrong or locked
	KindObject                      // no such key, several, or not a usable X25519 key
	KindRuntime                     // a token operation failed
)

// Error is a token-key failure. Its text is one line, names the token or
// object, and never holds a PIN or key material.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // the PKCS#11 error, if any

	refused *pinRefusal // set when the token refused the PIN
}

// pinRefusal is a login the token refused: a wrong PIN, or a locked one.
// Key holds off the token after it (key.go, pinHold).
type pinRefusal struct {
	sum      [32]byte // fingerprint of the refused PIN (Key.pinSum); never the PIN
	locked   bool     // the user PIN is locked (CKR_PIN_LOCKED, or CKF_USER_PIN_LOCKED after this try)
	finalTry bool     // CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks it
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Msg, e.Err)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(kind Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: err}
}
