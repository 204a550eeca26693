package handshake

import (
	"errors"
	"fmt"
	"io"

	"github.com/flynn/noise"
)

// StaticKey is this host's static X25519 key: in memory, or in a PKCS#11 token.
type StaticKey interface {
	Public() PublicKey
	// SharedSecret is X25519(static private, peer). Errors: token failures.
	SharedSecret(peer PublicKey) ([32]byte, error)
}

// ErrStaticKey wraps every failure of a StaticKey operation during a
// handshake (e.g. the token is gone), so the tunnel can tell it from a
// forged message and report it.
var ErrStaticKey = errors.New("static key operation failed")

// MemoryKey wraps a private key held in process memory as a StaticKey. The
// wrapper keeps its own copy of priv; the caller may zero priv afterwards.
func MemoryKey(priv PrivateKey) StaticKey {
	return &memoryKey{priv: priv, pub: priv.PublicKey()}
}

// memoryKey is the in-memory StaticKey. Immutable, except that the one who
// made it may zero it when no handshake uses it any more.
type memoryKey struct {
	priv PrivateKey
	pub  PublicKey
}

func (k *memoryKey) Public() PublicKey { return k.pub }

// SharedSecret returns all zeros for a low-order peer key (what X25519
// computes, and what a token returns); the handshake refuses that result.
// A zeroed key is refused: X25519 clamps a zero scalar into a valid one that
// everybody knows.
func (k *memoryKey) SharedSecret(peer PublicKey) ([32]byte, error) {
	var out [32]byte
	if k.priv.IsZero() {
		return out, errKeyZeroed
	}
	if err := x25519(&out, k.priv[:], peer[:]); err != nil {
		clear(out[:]) // the only failure: an all-zero result
	}
	return out, nil
}

// zero overwrites the wrapper's copy of the private key; only its maker
// calls it, once no handshake uses the key.
func (k *memoryKey) zero() { k.priv.Zero() }

// errKeyZeroed is SharedSecret's error once the key was zeroed.
var errKeyZeroed = errors.New("the in-memory private key was zeroed (the interface closed)")

// ZeroMemoryKey overwrites the private key held by a MemoryKey wrapper,
// once nothing uses it any more (a SharedSecret after it fails). Any other
// StaticKey (a token key) is left alone.
func ZeroMemoryKey(k StaticKey) {
	if m, ok := k.(*memoryKey); ok {
		m.zero()
	}
}

// String never shows the key.
func (k *memoryKey) String() string { return privateKeyPlaceholder }

// GoString keeps %#v from printing the bytes.
func (k *memoryKey) GoString() string { return privateKeyPlaceholder }

// Format prints the placeholder whatever the verb: without it %d prints
// the struct, whose unexported key field fmt prints byte by byte (it cannot
// call that field's own Format).
func (k *memoryKey) Format(f fmt.State, _ rune) { io.WriteString(f, privateKeyPlaceholder) }

// staticKey returns the key the handshake uses and what it implies. Config.Static
// wins; else Config.PrivateKey is wrapped, and owned is that wrapper, which
// the caller zeroes when done (it holds a copy of the private key).
func (c *Config) staticKey() (key StaticKey, lk localKeys, owned *memoryKey, err error) {
	if c.Static != nil {
		pub := c.Static.Public()
		if pub.IsZero() {
			return nil, localKeys{}, nil, errors.New("our static key has no public key")
		}
		return c.Static, localKeys{pub: pub, mac1Key: mac1Key(pub)}, nil, nil
	}
	if c.PrivateKey.IsZero() {
		return nil, localKeys{}, nil, errors.New("our private key is not set")
	}
	lk = deriveLocalKeys(&c.PrivateKey) // cached: no X25519 per handshake
	owned = &memoryKey{priv: c.PrivateKey, pub: lk.pub}
	return owned, lk, owned, nil
}

// staticDH is the Noise DH function of one handshake. The Noise state is
// given our static key pair with an EMPTY private key: flynn/noise passes
// the private bytes it holds to DH, so a call with no private key is a DH
// with our static key, and goes to StaticKey.SharedSecret (a token
// operation for a PKCS#11 key). Ephemeral keys are always 32 bytes and use
// dh25519 (fixed-base key generation, one-ladder X25519). The static
// private key therefore never enters the Noise state, whatever kind of key
// it is.
//
// On the responder, memo and record (both optional) let the static-static
// DH be computed once per peer (ssmemo.go).
type staticDH struct {
	key    StaticKey
	memo   *ssMemo   // nil: nothing is remembered
	record *dhRecord // nil: results are not recorded
}

func (d staticDH) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	return dh25519{}.GenerateKeypair(rng)
}

func (d staticDH) DH(priv, pub []byte) ([]byte, error) {
	if len(priv) != 0 {
		return dh25519{}.DH(priv, pub)
	}
	var peer PublicKey
	if len(pub) != KeySize {
		return nil, fmt.Errorf("peer key is %d bytes, want %d", len(pub), KeySize)
	}
	copy(peer[:], pub)
	var ss [32]byte
	if d.memo == nil || !d.memo.lookup(peer, &ss) {
		var err error
		if ss, err = d.key.SharedSecret(peer); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStaticKey, err)
		}
	}
	// A low-order peer key: refused like noise.DH25519 refuses it, and not
	// an ErrStaticKey (it is the peer's doing, not the key's).
	if isZero(ss[:]) {
		return nil, errors.New("low-order peer public key")
	}
	if d.record != nil {
		d.record.add(peer, &ss)
	}
	out := make([]byte, KeySize)
	copy(out, ss[:])
	clear(ss[:])
	return out, nil
}

func (d staticDH) DHLen() int     { return noise.DH25519.DHLen() }
func (d staticDH) DHName() string { return noise.DH25519.DHName() }

// newNoiseStatic is newNoise with our static key behind key (see staticDH).
func newNoiseStatic(initiator bool, rng io.Reader, key StaticKey, pub PublicKey, peerStatic []byte, psk []byte) (*noise.HandshakeState, error) {
	return newNoiseStaticDH(initiator, rng, staticDH{key: key}, pub, peerStatic, psk)
}

// newNoiseStaticDH is newNoiseStatic with a given staticDH (the responder's,
// with its memo).
func newNoiseStaticDH(initiator bool, rng io.Reader, dh staticDH, pub PublicKey, peerStatic []byte, psk []byte) (*noise.HandshakeState, error) {
	suite := noise.NewCipherSuite(dh, noise.CipherChaChaPoly, noise.HashBLAKE2s)
	return newNoiseSuite(suite, initiator, rng, noise.DHKey{Public: pub[:]}, peerStatic, psk)
}
