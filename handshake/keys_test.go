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

// FuzzParseKey: the key parsers read key files and config values. All three
// accept exactly the same inputs (a public key must also not be all zeros),
// the string and Bytes variants agree, what they accept is what the key's
// own encoding parses back to, and a refusal is the zero key with an error
// that is a fixed sentence, never the input.
func FuzzParseKey(f *testing.F) {
	k, _ := GeneratePrivateKey(bytes.NewReader(bytes.Repeat([]byte{7}, KeySize)))
	good := k.Base64()
	f.Add([]byte(good))
	f.Add([]byte(good[:20] + "\r\n" + good[20:]))
	f.Add([]byte(good[:43] + "B"))                                          // stray bits in the last digit
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, KeySize)))) // the zero key
	f.Add([]byte(good[:40]))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		priv, err := ParsePrivateKeyBytes(in)
		psk, perr := ParsePresharedKeyBytes(in)
		pub, uerr := ParsePublicKey(string(in))
		if !bytes.Equal(in, orig) {
			t.Fatal("a parser changed the caller's buffer")
		}
		if s, serr := ParsePrivateKey(string(in)); s != priv || (serr == nil) != (err == nil) {
			t.Fatalf("ParsePrivateKey and ParsePrivateKeyBytes differ: %v, %v", serr, err)
		}
		if s, serr := ParsePresharedKey(string(in)); s != psk || (serr == nil) != (perr == nil) {
			t.Fatalf("ParsePresharedKey and ParsePresharedKeyBytes differ: %v, %v", serr, perr)
		}
		if (err == nil) != (perr == nil) || (uerr == nil) != (err == nil && !priv.IsZero()) {
			t.Fatalf("parsers disagree on %q: private %v, preshared %v, public %v", in, err, perr, uerr)
		}
		if err != nil {
			if priv != (PrivateKey{}) || psk != (PresharedKey{}) || err != errKeyLength || perr != errKeyLength {
				t.Fatalf("refusal with a key or another error: %v, %v", err, perr)
			}
			return
		}
		if [KeySize]byte(priv) != [KeySize]byte(psk) || uerr == nil && [KeySize]byte(pub) != [KeySize]byte(priv) {
			t.Fatal("the parsers decoded different keys")
		}
		if uerr != nil && uerr.Error() != "public key is all zeros" {
			t.Fatalf("public key refused with %v", uerr)
		}
		if again, err := ParsePrivateKey(priv.Base64()); err != nil || again != priv {
			t.Fatalf("the key's own encoding does not parse back: %v", err)
		}
	})
}
