package handshake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// printVerbs is every verb fmt gives an array of bytes, with flags: a key
// type must print its placeholder for each (fmt asks String only for %v,
// %s, %x, %X and %q, and prints the bytes for the rest).
var printVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%08d", "%o", "%O", "%b", "%c", "%U", "%#U", "%e"}

// leaks reports which renderings of key's bytes out holds: decimal (the
// array as fmt prints it), hex, and the byte values as written by %o, %b
// and %U, which need no more than the first two bytes to be told apart.
func leaks(out string, key []byte) []string {
	var found []string
	for _, r := range []string{
		fmt.Sprint(key[:4]), fmt.Sprintf("%x", key[:4]), fmt.Sprintf("%o", key[:2]),
		fmt.Sprintf("%b", key[:2]), fmt.Sprintf("%U", key[:2]), fmt.Sprintf("%d", key[:2]),
		strings.Trim(fmt.Sprint(key[:3]), "[]"), strings.Trim(fmt.Sprint([]int{int(key[0]), int(key[1])}), "[]"),
	} {
		if strings.Contains(out, r) {
			found = append(found, r)
		}
	}
	return found
}

// secretBytes is a key whose bytes are unlike anything a placeholder holds.
func secretBytes() [KeySize]byte {
	var k [KeySize]byte
	for i := range k {
		k[i] = byte(0x9b + 7*i)
	}
	return k
}

// TestKeysNeverPrint: a private or pre-shared key given to fmt with any
// verb, to encoding/json, or to either of slog's handlers, alone or inside
// a struct, shows its placeholder and none of its bytes. %d of a key
// printed its 32 numbers, and JSON (slog's JSON handler included) a list
// of them.
func TestKeysNeverPrint(t *testing.T) {
	raw := secretBytes()
	priv, psk := PrivateKey(raw), PresharedKey(raw)
	mem := MemoryKey(priv)
	for _, c := range []struct {
		name        string
		v           any
		placeholder string
		encoded     bool // data an encoder may be given (not a StaticKey, nor a Config of funcs)
	}{
		{"PrivateKey", priv, "(private key)", true},
		{"*PrivateKey", &priv, "(private key)", true},
		{"PresharedKey", psk, "(preshared key)", true},
		{"*PresharedKey", &psk, "(preshared key)", true},
		{"MemoryKey", mem, "(private key)", false},
		{"PeerInfo", PeerInfo{PresharedKey: psk}, "(preshared key)", true},
		{"Config", Config{PrivateKey: priv}, "(private key)", false},
	} {
		for _, verb := range printVerbs {
			out := fmt.Sprintf(verb, c.v)
			if l := leaks(out, raw[:]); len(l) > 0 || !strings.Contains(out, c.placeholder) {
				t.Errorf("%s with %s prints %q: key bytes %q, want %q", c.name, verb, out, l, c.placeholder)
			}
		}
		if !c.encoded {
			continue
		}
		b, err := json.Marshal(c.v)
		if l := leaks(string(b), raw[:]); err != nil || len(l) > 0 || !bytes.Contains(b, []byte(c.placeholder)) {
			t.Errorf("%s as JSON: %s, %v: key bytes %q", c.name, b, err, l)
		}
		for _, h := range []func(*bytes.Buffer) slog.Handler{
			func(w *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(w, nil) },
			func(w *bytes.Buffer) slog.Handler { return slog.NewTextHandler(w, nil) },
		} {
			var w bytes.Buffer
			slog.New(h(&w)).Info("x", "key", c.v)
			if l := leaks(w.String(), raw[:]); len(l) > 0 {
				t.Errorf("%s logged by slog: %s: key bytes %q", c.name, w.String(), l)
			}
		}
	}
}
