//go:build cgo

package pkcs11key

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"stunnel/handshake"
)

// findSlot returns the slot of the one token that matches u.
func findSlot(ctx tokenCalls, u *URI) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
		// A re-initialization failed while the token was away (reinitModule).
		return 0, errorf(KindToken, nil, "%s is not there (module %s did not start without it; is it plugged in?)", tokenName(u), u.ModulePath)
	}
	if err != nil {
		return 0, errorf(KindToken, err, "looking for %s: cannot list the tokens of module %s", tokenName(u), u.ModulePath)
	}
	var found []uint
	var infos []pkcs11.TokenInfo
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue // a slot that went away while we looked
		}
		if matches(u.Token, ti.Label) && matches(u.Manufacturer, ti.ManufacturerID) &&
			matches(u.Serial, ti.SerialNumber) && matches(u.Model, ti.Model) {
			found, infos = append(found, s), append(infos, ti)
		}
	}
	switch len(found) {
	case 0:
		return 0, errorf(KindToken, nil, "no %s in module %s (is it plugged in and initialized? list them with: pkcs11-tool --module %s -L)", tokenName(u), u.ModulePath, u.ModulePath)
	case 1:
		return found[0], nil
	}
	return 0, errorf(KindAmbiguous, nil, "%d tokens match %s in module %s: %s", len(found), tokenName(u), u.ModulePath, disambiguate(infos))
}

// disambiguate says which URI attributes tell the tokens in infos apart,
// with each token's value, ready to copy into the URI: serial= first (a
// label may be given to the next token too), then token=, then the rarely
// useful manufacturer= and model= (tokens of two makers).
func disambiguate(infos []pkcs11.TokenInfo) string {
	var ways []string
	for _, a := range []struct {
		name  string
		value func(pkcs11.TokenInfo) string
	}{
		{"serial", func(ti pkcs11.TokenInfo) string { return ti.SerialNumber }},
		{"token", func(ti pkcs11.TokenInfo) string { return ti.Label }},
		{"manufacturer", func(ti pkcs11.TokenInfo) string { return ti.ManufacturerID }},
		{"model", func(ti pkcs11.TokenInfo) string { return ti.Model }},
	} {
		var vs []string
		for _, ti := range infos {
			v := a.name + "=" + escape(trimLabel(a.value(ti)))
			if slices.Contains(vs, v) {
				vs = nil // two tokens alike here: this attribute cannot say which
				break
			}
			vs = append(vs, v)
		}
		if vs != nil {
			ways = append(ways, fmt.Sprintf("%s= (%s)", a.name, strings.Join(vs, ", ")))
		}
	}
	if len(ways) == 0 {
		return "no URI attribute tells them apart (the same serial, label, manufacturer and model): leave only one of them in the module"
	}
	return "say which in the pkcs11: URI with " + strings.Join(ways, " or ")
}

func matches(want, have string) bool { return want == "" || want == trimLabel(have) }

// loginAttempts counts every C_Login of this process: the tests count
// them to show that a refused PIN is not tried again at each handshake.
var loginAttempts atomic.Uint64

// openSession opens a session on u's token and logs in as the user with
// the PIN in pinFile, if the token needs a login. The PIN is read now and
// zeroed after the login (miekg/pkcs11 takes it as a string, a copy we
// cannot wipe; it becomes garbage at once). When the token refuses the PIN,
// the *Error's refused says how, with the PIN's fingerprint by pinSum (nil:
// none is taken).
func openSession(ctx tokenCalls, u *URI, pinFile string, rw bool, pinSum func(pin []byte) [32]byte) (pkcs11.SessionHandle, error) {
	sess, _, err := openSessionLogin(ctx, u, pinFile, rw, pinSum)
	return sess, err
}

// login says what openSessionLogin did about the login.
type login int

const (
	loginNotRequired login = iota // the token requires none (no CKF_LOGIN_REQUIRED)
	loginDone                     // it logged in
	loginAlready                  // this process was logged in already
)

// openSessionLogin is openSession, and says what it did about the login:
// the token may need none, or this process may be logged in already.
func openSessionLogin(ctx tokenCalls, u *URI, pinFile string, rw bool, pinSum func(pin []byte) [32]byte) (sess pkcs11.SessionHandle, l login, err error) {
	slot, err := findSlot(ctx, u)
	if err != nil {
		return 0, loginNotRequired, err
	}
	flags := uint(pkcs11.CKF_SERIAL_SESSION)
	if rw {
		flags |= pkcs11.CKF_RW_SESSION
	}
	sess, err = ctx.OpenSession(slot, flags)
	if err != nil {
		return 0, loginNotRequired, errorf(KindToken, err, "opening a session on %s", tokenName(u))
	}
	ti, err := ctx.GetTokenInfo(slot)
	if err != nil {
		_ = ctx.CloseSession(sess)
		return 0, loginNotRequired, errorf(KindToken, err, "reading the token info of %s", tokenName(u))
	}
	if ti.Flags&pkcs11.CKF_LOGIN_REQUIRED == 0 {
		return sess, loginNotRequired, nil
	}
	if pinFile == "" {
		_ = ctx.CloseSession(sess)
		return 0, loginNotRequired, errorf(KindPIN, nil, "%s needs a PIN: add pin-source=file:PATH to the pkcs11: URI or set [interface] pkcs11_pin_file", tokenName(u))
	}
	pin, err := readPIN(pinFile)
	if err != nil {
		_ = ctx.CloseSession(sess)
		return 0, loginNotRequired, err
	}
	loginAttempts.Add(1)
	err = ctx.Login(sess, pkcs11.CKU_USER, string(pin))
	var pe pkcs11.Error
	switch {
	case err == nil:
		clear(pin)
		return sess, loginDone, nil
	case errors.As(err, &pe) && pe == pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		clear(pin)
		return sess, loginAlready, nil
	case errors.As(err, &pe) && (pe == pkcs11.CKR_PIN_INCORRECT || pe == pkcs11.CKR_PIN_LEN_RANGE || pe == pkcs11.CKR_PIN_LOCKED):
		r := &pinRefusal{locked: pe == pkcs11.CKR_PIN_LOCKED}
		if pinSum != nil {
			r.sum = pinSum(pin)
		}
		clear(pin)
		_ = ctx.CloseSession(sess)
		// How many tries are left, as the token tells it after this one.
		if ti, err := ctx.GetTokenInfo(slot); err == nil {
			r.locked = r.locked || ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0
			r.finalTry = ti.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0
		}
		e := errorf(KindPIN, nil, "wrong PIN for %s (from %s); fix the PIN file (the token locks after too many wrong PINs)", tokenName(u), pinFile)
		if r.locked {
			e = errorf(KindPIN, nil, "the PIN of %s is locked; unlock it with the token's SO PIN", tokenName(u))
		}
		e.refused = r
		return 0, loginNotRequired, e
	}
	clear(pin)
	_ = ctx.CloseSession(sess)
	// The token going away or failing mid-login says nothing of the PIN:
	// it is KindToken, which up exits 1 for, so the unit starts it again
	// once the token is back. Anything else stays KindPIN (exit 2: no
	// restart loop that could spend the token's PIN tries).
	if errors.As(err, &pe) && tokenGone(pe) {
		return 0, loginNotRequired, errorf(KindToken, err, "logging in to %s", tokenName(u))
	}
	return 0, loginNotRequired, errorf(KindPIN, err, "logging in to %s", tokenName(u))
}

// tokenGone reports whether a PKCS#11 error is the token or its session
// failing, not a refusal of what was asked.
func tokenGone(e pkcs11.Error) bool {
	switch e {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED:
		return true
	}
	return false
}

// objectKind is the Kind of a failed call about the key (finding it,
// reading its attributes, deriving with it): KindObject, unless the token
// itself went away or failed meanwhile (tokenGone), which says nothing of
// the key. That is KindToken, as it is during the login: up exits 1 for
// it, and the unit starts it again once the token is back, where exit 2
// would leave the tunnel down after a token pulled at the wrong moment.
func objectKind(err error) Kind {
	var pe pkcs11.Error
	if errors.As(err, &pe) && tokenGone(pe) {
		return KindToken
	}
	return KindObject
}

// findKey finds the one object of class (private or public key) that u names.
func findKey(ctx tokenCalls, sess pkcs11.SessionHandle, u *URI, class uint) (pkcs11.ObjectHandle, error) {
	objs, err := findObjects(ctx, sess, u, class)
	if err != nil {
		return 0, errorf(objectKind(err), err, "searching %s for key %s", tokenName(u), objectName(u))
	}
	switch len(objs) {
	case 0:
		return 0, errorf(KindObject, nil, "%s has no private key %s; make one with: stunnel genkey --pkcs11 URI", tokenName(u), objectName(u))
	case 1:
		return objs[0], nil
	}
	return 0, errorf(KindObject, nil, "%s has %d keys named %s; add id= to the pkcs11: URI", tokenName(u), len(objs), objectName(u))
}

func findObjects(ctx tokenCalls, sess pkcs11.SessionHandle, u *URI, class uint) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if u.Object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, u.ID))
	}
	if err := ctx.FindObjectsInit(sess, tmpl); err != nil {
		return nil, err
	}
	objs, _, err := ctx.FindObjects(sess, 2)
	if ferr := ctx.FindObjectsFinal(sess); err == nil {
		err = ferr
	}
	return objs, err
}

// Generate makes a new X25519 key pair in u's token: the private key
// sensitive, never extractable, usable only for derivation, both objects
// stored on the token under u's label and id. It tries the PKCS#11 3.0
// Montgomery form and falls back to SoftHSM2's Edwards form. It refuses to
// replace an existing key. A token that does not answer within openTimeout
// fails it, as it fails Open (the rest, reading the public key back, is
// Open's).
func Generate(u *URI, pinFile string) (handshake.PublicKey, error) {
	return generate(u, pinFile, time.After, nil)
}

// generate is Generate with the deadline's timer and, when not nil, a
// wrapper of the module's calls (the tests make a call hang). A call into
// the token cannot be interrupted (worker.go), so the key pair is made on a
// goroutine of its own: when the deadline passes, the caller (`stunnel
// genkey --pkcs11`, which exits then) gets an error, and the goroutine
// ends and releases the module whenever the call returns.
func generate(u *URI, pinFile string, after func(time.Duration) <-chan time.Time, wrap func(tokenCalls) tokenCalls) (handshake.PublicKey, error) {
	if pinFile == "" {
		pinFile = u.PinFile
	}
	done := make(chan error, 1) // the goroutine never blocks on it
	go func() { done <- makeKeyPair(u, pinFile, wrap) }()
	select {
	case err := <-done:
		if err != nil {
			return handshake.PublicKey{}, err
		}
	case <-after(openTimeout):
		return handshake.PublicKey{}, errorf(KindRuntime, nil, "%s did not answer within %v while making key %s (it may or may not have made it: see stunnel pubkey --pkcs11 URI)",
			tokenName(u), openTimeout, objectName(u))
	}
	k, err := Open(u, pinFile)
	if err != nil {
		return handshake.PublicKey{}, err
	}
	defer k.Close()
	return k.Public(), nil
}

// makeKeyPair is generate's token work: log in, refuse an existing key,
// make the pair.
func makeKeyPair(u *URI, pinFile string, wrap func(tokenCalls) tokenCalls) error {
	ctx, err := loadModule(u.ModulePath)
	if err != nil {
		return err
	}
	defer releaseModule(u.ModulePath)
	var calls tokenCalls = ctx
	if wrap != nil {
		calls = wrap(calls)
	}
	sess, err := openSession(calls, u, pinFile, true, nil)
	if err != nil {
		return err
	}
	defer calls.CloseSession(sess)
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		objs, err := findObjects(calls, sess, u, class)
		if err != nil {
			return errorf(objectKind(err), err, "searching %s for key %s", tokenName(u), objectName(u))
		}
		if len(objs) > 0 {
			return errorf(KindObject, nil, "%s already has a key %s; pick another object= (stunnel never replaces a key)", tokenName(u), objectName(u))
		}
	}
	var genErr error
	for _, form := range []struct{ mech, keyType uint }{
		{ckmECMontgomeryKeyPairGen, ckkECMontgomery},
		{ckmECEdwardsKeyPairGen, ckkECEdwards},
	} {
		_, _, genErr = ctx.GenerateKeyPair(sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(form.mech, nil)},
			keyTemplate(u, pkcs11.CKO_PUBLIC_KEY, form.keyType), keyTemplate(u, pkcs11.CKO_PRIVATE_KEY, form.keyType))
		var pe pkcs11.Error
		if genErr == nil || !errors.As(genErr, &pe) || (pe != pkcs11.CKR_MECHANISM_INVALID && pe != pkcs11.CKR_TEMPLATE_INCONSISTENT &&
			pe != pkcs11.CKR_ATTRIBUTE_VALUE_INVALID && pe != pkcs11.CKR_CURVE_NOT_SUPPORTED && pe != pkcs11.CKR_DOMAIN_PARAMS_INVALID) {
			break
		}
	}
	if genErr != nil {
		return errorf(KindObject, genErr, "%s cannot make an X25519 key pair (neither CKM_EC_MONTGOMERY_KEY_PAIR_GEN nor SoftHSM2's X25519 CKM_EC_EDWARDS_KEY_PAIR_GEN worked)", tokenName(u))
	}
	return nil
}

func keyTemplate(u *URI, class, keyType uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
	}
	if class == pkcs11.CKO_PUBLIC_KEY {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, x25519OID), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false))
	} else {
		t = append(t,
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false))
	}
	if u.Object != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, u.ID))
	}
	return t
}
