// Package secretprint is for tests: it checks that a value holding key
// material prints none of it, whatever fmt verb or encoder it is given.
// fmt prints a struct field by field, an array byte by byte and an
// unexported field without its own String or Format, so each type that
// holds a key implements fmt.Formatter (and, for plain data,
// encoding.TextMarshaler) to print a placeholder instead.
package secretprint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Verbs is every verb fmt gives an array of bytes, with flags. fmt asks
// String only for %v, %s, %x, %X and %q, and prints the bytes for the rest.
var Verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%08d", "%o", "%O", "%b", "%c", "%U", "%#U", "%e"}

// Secret returns n bytes unlike any text a placeholder holds, so that
// Leaks finds them in any rendering.
func Secret(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x9b + 7*i)
	}
	return b
}

// Leaks returns the renderings of secret (at least 4 bytes) found in out:
// its bytes in decimal as fmt prints a slice or array, in hex, octal,
// binary and as code points. The first two or three bytes are enough to
// tell them from anything else in out.
func Leaks(out string, secret []byte) []string {
	var found []string
	for _, r := range []string{
		strings.Trim(fmt.Sprint(secret[:3]), "[]"), fmt.Sprintf("%x", secret[:4]), fmt.Sprintf("%X", secret[:4]),
		strings.Trim(fmt.Sprintf("%o", secret[:2]), "[]"), strings.Trim(fmt.Sprintf("%b", secret[:2]), "[]"),
		strings.Trim(fmt.Sprintf("%U", secret[:2]), "[]"), strings.Trim(fmt.Sprintf("%d", []int{int(secret[0]), int(secret[1])}), "[]"),
		fmt.Sprintf("%d,%d", secret[0], secret[1]),
	} {
		if strings.Contains(out, r) {
			found = append(found, r)
		}
	}
	return found
}

// Check fails t if v, formatted with any of Verbs, shows secret or does
// not show want (the placeholder, or part of it).
func Check(t testing.TB, name string, v any, secret []byte, want string) {
	t.Helper()
	for _, verb := range Verbs {
		out := fmt.Sprintf(verb, v)
		if l := Leaks(out, secret); len(l) > 0 || !strings.Contains(out, want) {
			t.Errorf("%s with %s prints %q: key bytes %q, want %q", name, verb, out, l, want)
		}
	}
	var w bytes.Buffer
	slog.New(slog.NewTextHandler(&w, nil)).Info("x", "value", v)
	if l := Leaks(w.String(), secret); len(l) > 0 {
		t.Errorf("%s logged by slog: %s: key bytes %q", name, w.String(), l)
	}
}

// CheckEncoded is Check for plain data, which may also be given to an
// encoder: encoding/json (and slog's JSON handler) must not write it either.
func CheckEncoded(t testing.TB, name string, v any, secret []byte, want string) {
	t.Helper()
	Check(t, name, v, secret, want)
	b, err := json.Marshal(v)
	if l := Leaks(string(b), secret); err != nil || len(l) > 0 || !bytes.Contains(b, []byte(want)) {
		t.Errorf("%s as JSON: %s, %v: key bytes %q, want %q", name, b, err, l, want)
	}
	var w bytes.Buffer
	slog.New(slog.NewJSONHandler(&w, nil)).Info("x", "value", v)
	if l := Leaks(w.String(), secret); len(l) > 0 {
		t.Errorf("%s logged by slog as JSON: %s: key bytes %q", name, w.String(), l)
	}
}
