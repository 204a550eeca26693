package handshake

import (
	"hash"
	"io"

	"github.com/flynn/noise"
	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/hkdf"
)

var cipherSuite = noise.NewCipherSuite(dh25519{}, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// newNoise starts one side of Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s. psk is
// nil on the responder, which learns whose PSK to use only from message 1.
func newNoise(initiator bool, rng io.Reader, static noise.DHKey, peerStatic []byte, psk []byte) (*noise.HandshakeState, error) {
	return newNoiseSuite(cipherSuite, initiator, rng, static, peerStatic, psk)
}

// newNoiseSuite is newNoise with a given cipher suite (newNoiseStatic's DH).
func newNoiseSuite(suite noise.CipherSuite, initiator bool, rng io.Reader, static noise.DHKey, peerStatic []byte, psk []byte) (*noise.HandshakeState, error) {
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:           suite,
		Random:                rng,
		Pattern:               noise.HandshakeIK,
		Initiator:             initiator,
		Prologue:              []byte(prologue),
		PresharedKey:          psk,
		PresharedKeyPlacement: 2,
		StaticKeypair:         static,
		PeerStatic:            peerStatic,
	})
}

func newBLAKE2s() hash.Hash {
	h, _ := blake2s.New256(nil) // never fails without a key
	return h
}

// dataKey is HKDF-BLAKE2s (RFC 5869, HMAC-BLAKE2s-256, empty salt) of a Noise
// split key, with info = label || cipher ID, so a key is bound to its direction
// and to the cipher it will be used with.
func dataKey(dst *[32]byte, splitKey *[32]byte, label string, c Cipher) {
	info := make([]byte, 0, len(label)+1)
	info = append(append(info, label...), byte(c))
	r := hkdf.New(newBLAKE2s, splitKey[:], nil, info)
	_, _ = io.ReadFull(r, dst[:]) // 32 bytes are far below HKDF's limit
}

// finish derives the session from a completed handshake and zeroes what it can
// reach: the split keys and the transcript hash. flynn/noise keeps copies of
// its chaining key inside unexported fields; they become garbage with hs.
func finish(hs *noise.HandshakeState, cs1, cs2 *noise.CipherState, c Cipher, initiator bool) *Session {
	s := &Session{Initiator: initiator, Cipher: c}
	k1, k2 := cs1.UnsafeKey(), cs2.UnsafeKey() // k1: initiator to responder
	var i2r, r2i [32]byte
	dataKey(&i2r, &k1, labelKeyI2R, c)
	dataKey(&r2i, &k2, labelKeyR2I, c)
	if initiator {
		s.SendKey, s.RecvKey = i2r, r2i
	} else {
		s.SendKey, s.RecvKey = r2i, i2r
	}
	h := newBLAKE2s()
	h.Write([]byte(labelSessionID))
	th := hs.ChannelBinding()
	h.Write(th)
	h.Sum(s.SessionID[:0])
	resumptionSecret(&s.ResumptionSecret, &k1, &k2, th)
	clear(k1[:])
	clear(k2[:])
	clear(i2r[:])
	clear(r2i[:])
	clear(th)
	clear(hs.LocalEphemeral().Private)
	return s
}
