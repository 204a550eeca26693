//go:build cgo

package softhsmtest

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// ImportX25519 stores the X25519 private key priv in the token, labelled
// object, sensitive and not extractable, as another tool imports a key:
// the token marks it CKA_LOCAL false (not generated in it). It is in
// SoftHSM2's form (CKK_EC_EDWARDS with the X25519 curve OID), without a
// public key object. It initializes the module only if this process has
// not (and then finalizes it again), so it may run beside an open key.
func (tok *Token) ImportX25519(t testing.TB, object string, priv [32]byte) {
	t.Helper()
	tok.Create(t, ImportedX25519(object, priv, true))
}

// Create stores the object that tmpl describes in the token, as another
// tool would (a test changes ImportedX25519's template to make a key that
// stunnel must refuse). It initializes the module as ImportX25519 does.
func (tok *Token) Create(t testing.TB, tmpl []*pkcs11.Attribute) {
	t.Helper()
	ctx, release := module(t)
	defer release()
	slot := tok.slot(t, ctx)
	sess, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("C_OpenSession: %v", err)
	}
	defer ctx.CloseSession(sess)
	if err := ctx.Login(sess, pkcs11.CKU_USER, PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatalf("C_Login: %v", err)
	}
	if _, err := ctx.CreateObject(sess, tmpl); err != nil {
		t.Fatalf("C_CreateObject: %v", err)
	}
}

// ImportedX25519 is the template of an X25519 private key stored in the
// token from outside, labelled object, as another tool imports one: the
// token marks it CKA_LOCAL false. sealed: sensitive and not extractable (it
// cannot leave the token now, though a copy was outside it); otherwise
// extractable and readable. SoftHSM2's form: CKK_EC_EDWARDS with the
// X25519 curve OID, and no public key object.
func ImportedX25519(object string, priv [32]byte, sealed bool) []*pkcs11.Attribute {
	const ckkECEdwards = 0x40
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, sealed),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, !sealed),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, object),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}), // OID 1.3.101.110, X25519
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, priv[:]),
	}
}

// Serials are the serial numbers of the tokens in tok's store that are
// labelled label, in slot order (AddToken makes several).
func (tok *Token) Serials(t testing.TB, label string) []string {
	t.Helper()
	ctx, release := module(t)
	defer release()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatalf("C_GetSlotList: %v", err)
	}
	var serials []string
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && strings.TrimRight(ti.Label, " \x00") == label {
			serials = append(serials, strings.TrimRight(ti.SerialNumber, " \x00"))
		}
	}
	return serials
}

// module is the module, initialized. It initializes it only if this
// process has not, and then release finalizes it again at once (SoftHSM2
// reads its store at C_Initialize: a module left initialized would miss
// what the test does to the store next), so it may be used beside an open
// key.
func module(t testing.TB) (ctx *pkcs11.Ctx, release func()) {
	t.Helper()
	ctx = pkcs11.New(Module)
	if ctx == nil {
		t.Fatalf("loading %s failed", Module)
	}
	err := ctx.Initialize()
	switch {
	case err == nil:
		return ctx, func() { ctx.Finalize(); ctx.Destroy() }
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
	default:
		t.Fatalf("C_Initialize: %v", err)
	}
	return ctx, func() {}
}

// slot is the slot of this token.
func (tok *Token) slot(t testing.TB, ctx *pkcs11.Ctx) uint {
	t.Helper()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatalf("C_GetSlotList: %v", err)
	}
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && strings.TrimRight(ti.Label, " \x00") == tok.Label {
			return s
		}
	}
	t.Fatalf("no token %q in %s", tok.Label, Module)
	return 0
}
