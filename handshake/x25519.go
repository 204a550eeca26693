package handshake

import (
	"crypto/subtle"
	"errors"

	"filippo.io/edwards25519/field"
)

// errLowOrder: X25519 gave all zeros, the peer's point has a small order.
// The handshake refuses it, as noise.DH25519 and curve25519.X25519 do.
var errLowOrder = errors.New("x25519: low-order peer public key")

// x25519 computes X25519(scalar, point) (RFC 7748) into dst with one scalar
// multiplication: the Montgomery ladder of crypto/ecdh, on the same field
// arithmetic (filippo.io/edwards25519/field, assembly on amd64).
//
// Why not golang.org/x/crypto/curve25519.X25519: since it became a wrapper
// of crypto/ecdh, each call builds an ecdh.PrivateKey, whose constructor
// computes the scalar's public key first, a second ladder nobody reads. A
// full handshake's responder does four Diffie-Hellman operations, so that
// doubled most of its cost (docs/PERFORMANCE.md, "Handshakes per second
// per core"). The result is bit for bit X25519's
// (TestX25519MatchesXCrypto, the RFC 7748 vectors).
//
// The scalar is clamped as RFC 7748 says; the point's top bit is ignored
// and non-canonical values are accepted, as X25519 must. An all-zero result
// is returned with errLowOrder. Constant time in the scalar.
func x25519(dst *[32]byte, scalar, point []byte) error {
	if len(scalar) != 32 || len(point) != 32 {
		return errors.New("x25519: scalar and point must be 32 bytes")
	}
	var e [32]byte
	copy(e[:], scalar)
	e[0] &= 248
	e[31] &= 127
	e[31] |= 64

	var x1, x2, z2, x3, z3, tmp0, tmp1 field.Element
	if _, err := x1.SetBytes(point); err != nil {
		return err
	}
	x2.One()
	x3.Set(&x1)
	z3.One()

	swap := 0
	for pos := 254; pos >= 0; pos-- {
		b := int(e[pos/8]>>uint(pos&7)) & 1
		swap ^= b
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = b

		tmp0.Subtract(&x3, &z3)
		tmp1.Subtract(&x2, &z2)
		x2.Add(&x2, &z2)
		z2.Add(&x3, &z3)
		z3.Multiply(&tmp0, &x2)
		z2.Multiply(&z2, &tmp1)
		tmp0.Square(&tmp1)
		tmp1.Square(&x2)
		x3.Add(&z3, &z2)
		z2.Subtract(&z3, &z2)
		x2.Multiply(&tmp1, &tmp0)
		tmp1.Subtract(&tmp1, &tmp0)
		z2.Square(&z2)

		z3.Mult32(&tmp1, 121666)
		x3.Square(&x3)
		tmp0.Add(&tmp0, &z3)
		z3.Multiply(&x1, &z2)
		z2.Multiply(&tmp1, &tmp0)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)

	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(dst[:], x2.Bytes())
	clear(e[:])
	var zero [32]byte
	if subtle.ConstantTimeCompare(dst[:], zero[:]) == 1 {
		return errLowOrder
	}
	return nil
}

// x25519DH is x25519 in the shape of noise.DHFunc.DH: a new slice, or nil
// and the error.
func x25519DH(priv, pub []byte) ([]byte, error) {
	var out [32]byte
	if err := x25519(&out, priv, pub); err != nil {
		return nil, err
	}
	return out[:], nil
}
