//go:build cgo

package pkcs11key

import (
	"errors"
	"strings"
	"testing"

	"stunnel/internal/softhsmtest"
)

// TestSeveralTokensMatch: two tokens labelled alike make a URI with only
// token= ambiguous. Open and Generate refuse it as a configuration error
// (KindAmbiguous) in one line that says how many matched and gives the
// serial= of each, and the URI with one of them works.
func TestSeveralTokensMatch(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	tok.AddToken(t, "gw")
	serials := tok.Serials(t, "gw")
	if len(serials) != 2 || serials[0] == serials[1] {
		t.Fatalf("two tokens labelled gw have serials %q, want two different ones", serials)
	}
	u := mustParse(t, tok.URI("site-a"))
	_, gerr := Generate(u, "")
	k, oerr := Open(u, "")
	if oerr == nil {
		k.Close()
	}
	for what, err := range map[string]error{"Generate": gerr, "Open": oerr} {
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindAmbiguous || !strings.Contains(err.Error(), `2 tokens match token "gw"`) ||
			!strings.Contains(err.Error(), "serial="+serials[0]) || !strings.Contains(err.Error(), "serial="+serials[1]) ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with two tokens labelled gw: %v; want one KindAmbiguous line with the count and both serial=", what, err)
		}
	}
	one := mustParse(t, strings.Replace(tok.URI("site-a"), "token=gw", "token=gw;serial="+serials[1], 1))
	pub, err := Generate(one, "")
	if err != nil {
		t.Fatalf("Generate with serial=: %v", err)
	}
	k, err = Open(one, "")
	if err != nil {
		t.Fatalf("Open with serial=: %v", err)
	}
	defer k.Close()
	if k.Public() != pub {
		t.Fatal("Open with serial= found another key than Generate made")
	}
}
