package tickets

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

// Default lifetimes (s2n-tls's defaults, and the [tickets] defaults).
const (
	DefaultEncryptDecryptLifetime = 2 * time.Hour
	DefaultDecryptLifetime        = 13 * time.Hour
	DefaultReauthAfter            = 24 * time.Hour
)

// Key is one ticket key. Its secret is unexported: it leaves the package
// only through the key file writer (MarshalKeyFile).
type Key struct {
	Name    [NameSize]byte // public: written in every ticket it seals
	secret  [SecretSize]byte
	Created time.Time // start of its encrypt-decrypt life (may be in the future: pending)
	// EncryptDecrypt: it seals and opens in [Created, Created+EncryptDecrypt).
	EncryptDecrypt time.Duration
	// DecryptOnly: it only opens in [Created+EncryptDecrypt, End()), then is erased.
	DecryptOnly time.Duration
}

// KeyState is where a key is in its life.
type KeyState int

const (
	KeyPending        KeyState = iota // before Created
	KeyEncryptDecrypt                 // seals and opens
	KeyDecryptOnly                    // opens only
	KeyExpired                        // erased
)

func (s KeyState) String() string {
	switch s {
	case KeyPending:
		return "pending"
	case KeyEncryptDecrypt:
		return "encrypt-decrypt"
	case KeyDecryptOnly:
		return "decrypt-only"
	}
	return "expired"
}

// MarshalText makes KeyState a string in `show --json`.
func (s KeyState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// EncryptUntil is when the key stops sealing.
func (k *Key) EncryptUntil() time.Time { return k.Created.Add(k.EncryptDecrypt) }

// End is when the key stops opening and is erased: no ticket it sealed is
// valid at or after End.
func (k *Key) End() time.Time { return k.EncryptUntil().Add(k.DecryptOnly) }

// State is the key's state at now.
func (k *Key) State(now time.Time) KeyState {
	switch {
	case now.Before(k.Created):
		return KeyPending
	case now.Before(k.EncryptUntil()):
		return KeyEncryptDecrypt
	case now.Before(k.End()):
		return KeyDecryptOnly
	}
	return KeyExpired
}

// Format prints the key's name, never its secret: fmt would print the
// unexported secret field byte by byte (a Key passed to a logger or an
// error by mistake).
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "(ticket key %s)", k.NameHex()) }

// NameHex is the key name as logs, `show` and the key file print it.
func (k *Key) NameHex() string { return hex.EncodeToString(k.Name[:]) }

// IsErased reports whether the secret is all zero (after Erase).
func (k *Key) IsErased() bool { return allZero(k.secret[:]) }

// Erase zeroes the secret.
func (k *Key) Erase() { clear(k.secret[:]) }

// GenerateKey makes a key with a random name and secret (rng nil: crypto/rand).
func GenerateKey(rng io.Reader, created time.Time, encryptDecrypt, decryptOnly time.Duration) (Key, error) {
	if encryptDecrypt <= 0 || decryptOnly <= 0 {
		return Key{}, fmt.Errorf("ticket key lifetimes must be positive, got %v and %v", encryptDecrypt, decryptOnly)
	}
	if rng == nil {
		rng = rand.Reader
	}
	k := Key{Created: created, EncryptDecrypt: encryptDecrypt, DecryptOnly: decryptOnly}
	if _, err := io.ReadFull(rng, k.Name[:]); err != nil {
		return Key{}, fmt.Errorf("ticket key name: reading randomness: %w", err)
	}
	if _, err := io.ReadFull(rng, k.secret[:]); err != nil {
		return Key{}, fmt.Errorf("ticket key secret: reading randomness: %w", err)
	}
	if k.IsErased() {
		return Key{}, fmt.Errorf("ticket key secret: randomness returned zeros")
	}
	return k, nil
}

// KeyInfo is what `show` may print of a key: never its secret.
type KeyInfo struct {
	Name         string    `json:"name"` // hex
	State        KeyState  `json:"state"`
	Created      time.Time `json:"created"`
	EncryptUntil time.Time `json:"encrypt_until"` // when it becomes decrypt-only
	End          time.Time `json:"end"`           // when it is erased
}
