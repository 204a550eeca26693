//go:build !cgo

package pkcs11key

import (
	"log/slog"

	"stunnel/handshake"
)

// Supported reports whether this build can use PKCS#11 tokens.
const Supported = false

func unsupported() error {
	return errorf(KindUnsupported, nil, "this build has no PKCS#11 support (built with CGO_ENABLED=0); use a build with cgo, or private_key_file")
}

// Key is a static key in a PKCS#11 token; this build cannot open one.
type Key struct{}

// Open always fails in a build without cgo.
func Open(u *URI, pinFile string) (*Key, error) { return nil, unsupported() }

// OpenLogged always fails in a build without cgo.
func OpenLogged(u *URI, pinFile string, log *slog.Logger) (*Key, error) { return nil, unsupported() }

// Generate always fails in a build without cgo.
func Generate(u *URI, pinFile string) (handshake.PublicKey, error) {
	return handshake.PublicKey{}, unsupported()
}

func (k *Key) Public() handshake.PublicKey { return handshake.PublicKey{} }

func (k *Key) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	return [32]byte{}, unsupported()
}

func (k *Key) Close() error { return nil }

// Ops is the number of token operations done.
func (k *Key) Ops() uint64 { return 0 }

// URI is empty: no key is ever opened in this build.
func (k *Key) URI() string { return "" }

// PinFile is empty: no key is ever opened in this build.
func (k *Key) PinFile() string { return "" }

// SetLogger does nothing: no key is ever opened in this build.
func (k *Key) SetLogger(l *slog.Logger) {}

// Unanswered is 0: no key is ever opened in this build.
func (k *Key) Unanswered() uint64 { return 0 }

// Origin is zero: no key is ever opened in this build.
func (k *Key) Origin() Origin { return Origin{} }

// OriginWarning is empty: no key is ever opened in this build.
func (k *Key) OriginWarning() string { return "" }

// Hung is false: no key is ever opened in this build.
func (k *Key) Hung() bool { return false }
