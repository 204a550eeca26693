package handshake

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/curve25519"
)

// KeySize is the length of X25519 keys and pre-shared keys.
const KeySize = 32

// PublicKey is an X25519 public key. It is not secret; String gives its base64 form.
type PublicKey [KeySize]byte

// PrivateKey is an X25519 private key. Its String, Format and MarshalText
// never reveal it, so a key passed to a logger or an encoder by mistake
// prints a placeholder; Base64 is the one explicit way out (used by
// `stunnel genkey`).
type PrivateKey [KeySize]byte

// PresharedKey is an optional symmetric key shared by two peers and mixed into
// their handshake (Noise psk2). The zero value means "none". It prints and
// encodes as a placeholder, as PrivateKey does.
type PresharedKey [KeySize]byte

// The placeholders the key types print instead of their bytes.
const (
	privateKeyPlaceholder   = "(private key)"
	presharedKeyPlaceholder = "(preshared key)"
)

var errKeyLength = errors.New("key must be base64 of exactly 32 bytes")

// GeneratePrivateKey returns a new clamped X25519 private key read from r
// (crypto/rand when r is nil).
func GeneratePrivateKey(r io.Reader) (PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	var k PrivateKey
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("reading randomness: %w", err)
	}
	k.clamp()
	return k, nil
}

func (k *PrivateKey) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// PublicKey derives the public key. It panics only if the curve library
// rejects a 32-byte scalar, which it never does.
func (k PrivateKey) PublicKey() PublicKey {
	var pub PublicKey
	out, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		panic("handshake: X25519 base-point multiplication failed: " + err.Error())
	}
	copy(pub[:], out)
	return pub
}

// IsZero reports whether the key is all zeros (unset).
func (k PrivateKey) IsZero() bool { return isZero(k[:]) }

// Base64 returns the key in the form `stunnel genkey` prints. Never log it.
func (k PrivateKey) Base64() string { return base64.StdEncoding.EncodeToString(k[:]) }

// String never shows the key, so fmt and slog cannot leak it.
func (k PrivateKey) String() string { return privateKeyPlaceholder }

// GoString keeps %#v from printing the bytes.
func (k PrivateKey) GoString() string { return privateKeyPlaceholder }

// Format prints the placeholder whatever the verb. fmt asks String only
// for %v, %s, %x, %X and %q; for %d, %o, %b, %c or %U it prints the array
// element by element, the key's bytes.
func (k PrivateKey) Format(f fmt.State, _ rune) { io.WriteString(f, privateKeyPlaceholder) }

// MarshalText keeps encoders from writing the bytes: encoding/json writes
// a byte array as the list of its numbers (so would slog's JSON handler,
// which a program embedding securesession may log with).
func (k PrivateKey) MarshalText() ([]byte, error) { return []byte(privateKeyPlaceholder), nil }

// Zero overwrites the key.
func (k *PrivateKey) Zero() { *k = PrivateKey{} }

// String returns the base64 form.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether the key is all zeros (unset).
func (k PublicKey) IsZero() bool { return isZero(k[:]) }

// Equal compares in constant time.
func (k PublicKey) Equal(o PublicKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// IsZero reports whether no pre-shared key is set.
func (k PresharedKey) IsZero() bool { return isZero(k[:]) }

// String never shows the key.
func (k PresharedKey) String() string { return presharedKeyPlaceholder }

// GoString keeps %#v from printing the bytes.
func (k PresharedKey) GoString() string { return presharedKeyPlaceholder }

// Format prints the placeholder whatever the verb (PrivateKey.Format).
func (k PresharedKey) Format(f fmt.State, _ rune) { io.WriteString(f, presharedKeyPlaceholder) }

// MarshalText keeps encoders from writing the bytes (PrivateKey.MarshalText).
func (k PresharedKey) MarshalText() ([]byte, error) { return []byte(presharedKeyPlaceholder), nil }

// Zero overwrites the key.
func (k *PresharedKey) Zero() { *k = PresharedKey{} }

// Tag identifies the pre-shared key without holding it:
// BLAKE2s-256("stunnel v1 psk tag" || psk). A responder's session and a
// session ticket carry the tag of the key they were made under, so the
// responder and the session core can tell that the key configured for a
// peer changed since, without a copy of the key.
// A pre-shared key is 32 random bytes (`stunnel genkey`), too many to guess
// from its tag; the zero key ("none") has a well-known tag. Compare tags in
// constant time all the same.
//
// One Sum256 of a local buffer, cleared after, rather than a hash.Hash: a
// digest object keeps its last partial block, the key here, on the heap.
func (k *PresharedKey) Tag() [32]byte {
	var in [len(labelPSKTag) + KeySize]byte
	copy(in[:], labelPSKTag)
	copy(in[len(labelPSKTag):], k[:])
	tag := blake2s.Sum256(in[:])
	clear(in[:])
	return tag
}

// ParsePrivateKey decodes base64 of 32 bytes. The error never contains the input.
func ParsePrivateKey(s string) (PrivateKey, error) {
	b := []byte(s) // the copy base64.DecodeString would make, cleared
	defer clear(b)
	return ParsePrivateKeyBytes(b)
}

// ParsePrivateKeyBytes is ParsePrivateKey for a key read into a buffer the
// caller clears (a key file): no string copy of it, which nobody could
// clear, is ever made. It neither keeps nor changes b.
func ParsePrivateKeyBytes(b []byte) (PrivateKey, error) {
	var k PrivateKey
	if err := decodeKey(b, k[:]); err != nil {
		return PrivateKey{}, err
	}
	return k, nil
}

// ParsePublicKey decodes base64 of 32 bytes.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	if err := decodeKey([]byte(s), k[:]); err != nil {
		return PublicKey{}, err
	}
	if k.IsZero() {
		return PublicKey{}, errors.New("public key is all zeros")
	}
	return k, nil
}

// ParsePresharedKey decodes base64 of 32 bytes. The error never contains the input.
func ParsePresharedKey(s string) (PresharedKey, error) {
	b := []byte(s)
	defer clear(b)
	return ParsePresharedKeyBytes(b)
}

// ParsePresharedKeyBytes is ParsePresharedKey for a key in a buffer the
// caller clears, as ParsePrivateKeyBytes.
func ParsePresharedKeyBytes(b []byte) (PresharedKey, error) {
	var k PresharedKey
	if err := decodeKey(b, k[:]); err != nil {
		return PresharedKey{}, err
	}
	return k, nil
}

// decodeKey decodes src (standard base64, as DecodeString takes it) into
// dst through a buffer it clears, on error too: a wrong-length input still
// decodes to bytes of what may be a key.
func decodeKey(src, dst []byte) error {
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	defer clear(buf)
	n, err := base64.StdEncoding.Decode(buf, src)
	if err != nil || n != KeySize {
		return errKeyLength
	}
	copy(dst, buf[:n])
	return nil
}

func isZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}
