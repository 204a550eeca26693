//go:build cgo

package pkcs11key

import (
	"errors"
	"testing"

	"github.com/miekg/pkcs11"

	"stunnel/internal/softhsmtest"
)

// failAfterLogin is the module with one call that follows the login
// failing as err: the key search, the attribute read or the derivation.
type failAfterLogin struct {
	tokenCalls
	call string
	err  error
}

func (f *failAfterLogin) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	if f.call == "find" {
		return f.err
	}
	return f.tokenCalls.FindObjectsInit(sh, temp)
}

func (f *failAfterLogin) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	if f.call == "attributes" {
		return nil, f.err
	}
	return f.tokenCalls.GetAttributeValue(sh, o, a)
}

func (f *failAfterLogin) DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, base pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if f.call == "derive" {
		return 0, f.err
	}
	return f.tokenCalls.DeriveKey(sh, m, base, a)
}

// TestOpenTokenGoneAfterLogin: a token pulled out (or failing) right after
// the login, while Open looks for the key, reads its attributes or derives
// its public key, is a token problem (KindToken: up exits 1 and the unit
// starts it again once the token is back), as it is during the login; not
// a problem of the key (KindObject: exit 2, never restarted), which would
// leave the tunnel down for good after a token was pulled at the wrong
// moment. A refusal that is about the key stays KindObject.
func TestOpenTokenGoneAfterLogin(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	u := mustParse(t, tok.URI("site-a"))
	if _, err := Generate(u, ""); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"find", "attributes", "derive"} {
		for _, c := range []struct {
			err  pkcs11.Error
			want Kind
		}{
			{pkcs11.CKR_DEVICE_REMOVED, KindToken},
			{pkcs11.CKR_TOKEN_NOT_PRESENT, KindToken},
			{pkcs11.CKR_DEVICE_ERROR, KindToken},
			{pkcs11.CKR_SESSION_HANDLE_INVALID, KindToken},
			{pkcs11.CKR_KEY_TYPE_INCONSISTENT, KindObject},
		} {
			_, err := openKey(u, "", func(k *Key) {
				k.wrap = func(tc tokenCalls) tokenCalls { return &failAfterLogin{tokenCalls: tc, call: call, err: c.err} }
			})
			var e *Error
			if !errors.As(err, &e) || e.Kind != c.want {
				t.Errorf("%s failing with %v at Open: %v, want kind %v", call, c.err, err, c.want)
			}
		}
	}
}
