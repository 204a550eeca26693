package handshake

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/blake2s"
)

// A key read from a file is decoded from the caller's buffer (which it then
// clears) by the Bytes variants, from a string by the others. Both must
// accept and refuse exactly the same inputs, and the Bytes variant must
// leave the caller's buffer as it was: the caller still owns and clears it.
func TestParseKeyBytesMatchesString(t *testing.T) {
	k, _ := GeneratePrivateKey(nil)
	good := k.Base64()
	inputs := []string{
		good,
		good[:20] + "\n" + good[20:], // base64 skips newlines; so did DecodeString
		good[:43],
		good + "AAAA",
		base64.StdEncoding.EncodeToString(make([]byte, 31)),
		base64.StdEncoding.EncodeToString(make([]byte, 33)),
		strings.Replace(good, good[:1], "*", 1),
		"",
	}
	for _, in := range inputs {
		b := []byte(in)
		pk, perr := ParsePrivateKey(in)
		bk, berr := ParsePrivateKeyBytes(b)
		if (perr == nil) != (berr == nil) || pk != bk {
			t.Fatalf("private key %q: string %v, bytes %v", in, perr, berr)
		}
		sk, serr := ParsePresharedKey(in)
		bs, bserr := ParsePresharedKeyBytes(b)
		if (serr == nil) != (bserr == nil) || sk != bs {
			t.Fatalf("preshared key %q: string %v, bytes %v", in, serr, bserr)
		}
		if !bytes.Equal(b, []byte(in)) {
			t.Fatalf("the caller's buffer changed: %q", b)
		}
	}
	if pk, err := ParsePrivateKeyBytes([]byte(good)); err != nil || pk != k {
		t.Fatalf("a good key: %v", err)
	}
}

// PresharedKey.Tag is the documented hash (docs/PROTOCOL.md 8.1), so
// another implementation computes the same, and it tells keys apart.
func TestPresharedKeyTag(t *testing.T) {
	psk := PresharedKey{1, 2, 3}
	want := blake2s.Sum256(append([]byte("stunnel v1 psk tag"), psk[:]...))
	if psk.Tag() != want {
		t.Fatal("Tag is not BLAKE2s-256(\"stunnel v1 psk tag\" || psk)")
	}
	none := PresharedKey{}
	if none.Tag() == psk.Tag() || none.Tag() == ([32]byte{}) {
		t.Fatal("Tag does not tell the keys apart")
	}
}
