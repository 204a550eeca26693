//go:build cgo

package pkcs11key

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"stunnel/handshake"
)

// Supported reports whether this build can use PKCS#11 tokens.
const Supported = true

// PKCS#11 3.0 values that miekg/pkcs11 v1.1.1 may not name.
const (
	ckkECEdwards              = 0x40   // CKK_EC_EDWARDS: SoftHSM2 2.6 keeps X25519 keys under this type
	ckkECMontgomery           = 0x41   // CKK_EC_MONTGOMERY: the standard type for X25519
	ckmECEdwardsKeyPairGen    = 0x1055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmECMontgomeryKeyPairGen = 0x1056 // CKM_EC_MONTGOMERY_KEY_PAIR_GEN
	// maxSessionOpenAttempts: after a failure, one new session and one retry.
	maxSessionOpenAttempts = 2
	// reinitInterval: while the token is missing, handshakes fail at once
	// and the module is re-initialized (to find it again) at most this often.
	reinitInterval = time.Second
)

// x25519OID is DER of the X25519 object identifier 1.3.101.110, the
// CKA_EC_PARAMS of an X25519 key in both forms; curve25519Name is the
// PrintableString form that PKCS#11 3.0 also allows for Montgomery keys.
var (
	x25519OID      = []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}
	curve25519Name = []byte{0x13, 0x0a, 'c', 'u', 'r', 'v', 'e', '2', '5', '5', '1', '9'}
	basePoint      = handshake.PublicKey{9}
)

// Key is a static X25519 key in a PKCS#11 token: a handshake.StaticKey whose
// every private-key operation is C_DeriveKey(CKM_ECDH1_DERIVE) in the token.
// It keeps one logged-in session open, used by one goroutine, its worker
// (worker.go): a session is single-threaded in PKCS#11 anyway, and with
// SoftHSM2 an operation costs about three in-memory X25519s
// (BenchmarkSharedSecret). Callers wait for the worker with a deadline, so
// a token that hangs fails handshakes instead of holding them. After a
// token failure the session is dropped and the next operation opens and
// logs in again, so the daemon recovers when the token comes back. Safe
// for concurrent use.
type Key struct {
	uri     URI                 // immutable
	pinFile string              // immutable; read at each login, never kept
	pub     handshake.PublicKey // written by the first op (Open's), immutable once Open returns
	origin  Origin              // as pub
	ops     atomic.Uint64       // token derive operations done

	// now is the clock of the PIN back-off (pinhold.go), of the
	// re-initializations (reinitInterval) and of how long the token hangs;
	// after is the callers' deadline timer (worker.go); wrap, when not
	// nil, wraps the module's calls. Immutable: tests inject them before
	// the worker starts (openKey). pinKey (immutable, random) keys the
	// fingerprint of a refused PIN.
	now    func() time.Time
	after  func(time.Duration) <-chan time.Time
	wrap   func(tokenCalls) tokenCalls
	pinKey [32]byte

	// The worker and its callers (worker.go).
	queue      chan *op           // bounded (opQueueLen); callers send without blocking, the worker receives
	quit       chan struct{}      // closed once, by Close (quitOnce)
	quitOnce   sync.Once          // guards closing quit
	exited     chan struct{}      // closed by the worker when it has logged out and returned
	current    atomic.Pointer[op] // the op the worker runs, nil between ops; stored by the worker only
	unanswered atomic.Uint64      // ops failed because the token did not answer in time
	log        atomic.Pointer[slog.Logger]

	// mu is held by the worker while it runs an op: what it guards is the
	// worker's. Tests take it to act on the token between ops; callers and
	// Close never do (a hung call holds it).
	mu   sync.Mutex
	ctx  tokenCalls           // written by Open's op, then immutable: the module (calls.go)
	sess pkcs11.SessionHandle // guarded by mu; valid when open
	obj  pkcs11.ObjectHandle  // guarded by mu; the private key, valid when open
	open bool                 // guarded by mu
	// loginRequired: the token requires a login (CKF_LOGIN_REQUIRED), so
	// a PIN protects its private objects; guarded by mu, set by openLocked.
	loginRequired bool
	// lastReinit is when the module was last re-initialized to find a
	// missing token; guarded by mu. See reinitInterval.
	lastReinit time.Time
	hold       pinHold // guarded by mu: a refused PIN, not tried again for a while
	loaded     bool    // guarded by mu: the Key holds a reference to the module (released by closeLocked)
}

// Open finds the key that u names, logs in with the PIN in pinFile (or
// u.PinFile when pinFile is ""), checks that the key is an X25519 key that
// is private, sensitive, not extractable and usable for derivation, and reads its
// public key. Errors are *Error with the Kind of failure. A token that does
// not answer within openTimeout fails it.
func Open(u *URI, pinFile string) (*Key, error) { return openKey(u, pinFile, nil) }

// OpenLogged is Open with the key's logger (SetLogger) set from the start,
// so the log shows every login, Open's too.
func OpenLogged(u *URI, pinFile string, log *slog.Logger) (*Key, error) {
	return openKey(u, pinFile, func(k *Key) { k.SetLogger(log) })
}

// openKey is Open; setup, when not nil, changes the new Key before its
// worker starts (tests inject clocks and a wrapper of the module).
func openKey(u *URI, pinFile string, setup func(*Key)) (*Key, error) {
	if pinFile == "" {
		pinFile = u.PinFile
	}
	k := &Key{uri: *u, pinFile: pinFile, now: time.Now, after: time.After,
		queue: make(chan *op, opQueueLen), quit: make(chan struct{}), exited: make(chan struct{})}
	if _, err := rand.Read(k.pinKey[:]); err != nil {
		return nil, errorf(KindRuntime, err, "reading random bytes")
	}
	if setup != nil {
		setup(k)
	}
	go k.serve()
	if _, err := k.do(openTimeout, func() ([32]byte, error) { return [32]byte{}, k.startLocked() }); err != nil {
		k.Close() // the worker releases what startLocked took
		return nil, err
	}
	return k, nil
}

// startLocked is Open's op: it loads the module and checks the key.
func (k *Key) startLocked() error {
	mod, err := loadModule(k.uri.ModulePath)
	if err != nil {
		return err
	}
	k.ctx, k.loaded = mod, true
	if k.wrap != nil {
		k.ctx = k.wrap(k.ctx)
	}
	if err := k.openLocked(); err != nil {
		return err
	}
	if err := k.checkKeyLocked(); err != nil {
		return err
	}
	k.origin = k.originLocked()
	// X25519(priv, 9) is the public key: one token operation proves that
	// the object derives, and gives the public key from the private object
	// itself, so it cannot come from a mismatched public object.
	pub, err := k.deriveLocked(basePoint)
	if err != nil {
		return errorf(objectKind(err), err, "%s: deriving with key %s failed", k.tokenName(), k.objectName())
	}
	k.pub = pub
	if stored, ok := k.storedPublicLocked(); ok && stored != pub {
		return errorf(KindObject, nil, "%s: the public key object of %s does not match its private key", k.tokenName(), k.objectName())
	}
	return nil
}

// Public is the key's public key, read at Open.
func (k *Key) Public() handshake.PublicKey { return k.pub }

// Origin is where the key came from, as the token said at Open.
func (k *Key) Origin() Origin { return k.origin }

// OriginWarning is one line saying why a copy of the key may exist
// outside the token, or "" when the token says none can (origin.go).
func (k *Key) OriginWarning() string {
	w := k.origin.Weakness()
	if w == "" {
		return ""
	}
	return fmt.Sprintf("%s: key %s: %s; for a key only the token ever held, make one with: stunnel genkey --pkcs11 URI", k.tokenName(), k.objectName(), w)
}

// Ops is the number of token derive operations done (for the benchmarks
// and for tests that count token use).
func (k *Key) Ops() uint64 { return k.ops.Load() }

// SharedSecret is X25519(key, peer), computed by the token. After a token
// failure it returns an error; the next call logs in again, except after
// the token refused the PIN: then not with the same PIN until a back-off
// passes (pinhold.go). A token that does not answer within opTimeout fails
// it, and then every call at once until the token answers (worker.go). For
// a low-order peer key it returns all zeros, as X25519 does, without
// asking the token; the handshake refuses that result.
func (k *Key) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	if isLowOrder(peer) {
		return [32]byte{}, nil
	}
	return k.do(opTimeout, func() ([32]byte, error) { return k.sharedSecretLocked(peer) })
}

func (k *Key) sharedSecretLocked(peer handshake.PublicKey) ([32]byte, error) {
	for attempt := 1; ; attempt++ {
		if !k.open {
			if err := k.reopenLocked(); err != nil {
				return [32]byte{}, err
			}
		}
		out, err := k.deriveLocked(peer)
		if err == nil {
			return out, nil
		}
		if isInputError(err) {
			// The peer's key, not the token: keep the session.
			return [32]byte{}, errorf(KindRuntime, err, "%s: X25519 with key %s refused the peer's key", k.tokenName(), k.objectName())
		}
		// The session, the login or the token is gone: start over once
		// at once (a token reset), then leave it to the next call.
		k.dropSessionLocked()
		if attempt >= maxSessionOpenAttempts {
			return [32]byte{}, errorf(KindRuntime, err, "%s: X25519 with key %s failed (will log in again at the next handshake)", k.tokenName(), k.objectName())
		}
	}
}

// closeLocked logs out, closes the session and releases the module; the
// worker runs it when it stops.
func (k *Key) closeLocked() {
	k.dropSessionLocked()
	k.hold = pinHold{}
	if k.loaded {
		k.loaded = false
		releaseModule(k.uri.ModulePath)
	}
}

func (k *Key) dropSessionLocked() {
	if k.open {
		_ = k.ctx.CloseSession(k.sess)
	}
	k.open = false
}

// reopenLocked opens a new session after the last one was lost: unless the
// token refused this PIN lately, it logs in again, and if the token is
// missing it re-initializes the module (at most every reinitInterval) to
// find it again.
func (k *Key) reopenLocked() error {
	if err := k.pinHeldLocked(); err != nil {
		return err
	}
	err := k.openLocked()
	var e *Error
	if now := k.now(); errors.As(err, &e) && e.Kind == KindToken && now.Sub(k.lastReinit) >= reinitInterval {
		k.lastReinit = now
		// Gone, or back but not yet seen by the module: look again.
		if rerr := reinitModule(k.uri.ModulePath); rerr != nil {
			return errorf(KindToken, nil, "%s is not there (module %s did not start without it; is it plugged in?)", k.tokenName(), k.uri.ModulePath)
		}
		err = k.openLocked()
	}
	switch {
	case err == nil:
		k.hold = pinHold{}
		if err := k.sameKeyLocked(); err != nil {
			k.dropSessionLocked()
			return err
		}
	case errors.As(err, &e) && e.refused != nil:
		return k.holdPINLocked(e.refused)
	}
	return err
}

// sameKeyLocked checks that the key a new session found is the one Open
// checked. The URI finds it by label and id only, so after a token was
// swapped for another with the same labels, or the object was replaced,
// it finds another key: the peers know only k.pub, and the other key may
// be one that could leave the token, which Open refuses. Costs one token
// operation per new session, not per handshake.
func (k *Key) sameKeyLocked() error {
	if err := k.checkKeyLocked(); err != nil {
		return err
	}
	pub, err := k.deriveLocked(basePoint)
	if err != nil {
		return errorf(KindRuntime, err, "%s: deriving with key %s failed", k.tokenName(), k.objectName())
	}
	if pub != k.pub {
		return errorf(KindObject, nil, "%s: key %s is not the key stunnel started with (its public key is %s, not %s): the token or the key was replaced; restart stunnel to use the new key", k.tokenName(), k.objectName(), handshake.PublicKey(pub), k.pub)
	}
	return nil
}

// openLocked finds the token, opens a session, logs in (logging that it
// did) and finds the key.
func (k *Key) openLocked() error {
	sess, l, err := openSessionLogin(k.ctx, &k.uri, k.pinFile, false, k.pinSum)
	if err != nil {
		return err
	}
	if l == loginDone {
		// For an operator who wonders why a token counts logins. Debug:
		// at start it would be a line before the one that says why a
		// start failed, and after a token reset the log already says so.
		k.logf(slog.LevelDebug, "logged in to the PKCS#11 token")
	}
	obj, err := findKey(k.ctx, sess, &k.uri, pkcs11.CKO_PRIVATE_KEY)
	if err != nil {
		_ = k.ctx.CloseSession(sess)
		return err
	}
	k.sess, k.obj, k.open, k.loginRequired = sess, obj, true, l != loginNotRequired
	return nil
}

// publicObjectRefused says whether a key that is a public object
// (private false) is refused. Only on a token that requires a login: a
// token without one (no CKF_LOGIN_REQUIRED) protects no object by a PIN,
// shows us only its public objects (we never log in to it), and so a
// static key there is public whatever genkey asked for; refusing it would
// refuse the token.
func publicObjectRefused(loginRequired, private bool) bool {
	return loginRequired && !private
}

// checkKeyLocked refuses keys that are not X25519, that anyone who can open
// the token may use without the PIN (CKA_PRIVATE false), that could leave
// the token (CKA_EXTRACTABLE true or CKA_SENSITIVE false) or may not
// derive. What only says a copy may exist outside the token (CKA_LOCAL and
// the like) is a warning, not a refusal: OriginWarning.
func (k *Key) checkKeyLocked() error {
	attrs, err := k.ctx.GetAttributeValue(k.sess, k.obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
	})
	if err != nil {
		return errorf(objectKind(err), err, "%s: reading the attributes of %s", k.tokenName(), k.objectName())
	}
	where := k.tokenName() + ": key " + k.objectName()
	kt := bytesToUint(attrs[0].Value)
	if kt != ckkECEdwards && kt != ckkECMontgomery {
		return errorf(KindObject, nil, "%s has key type %#x, not an X25519 key (CKK_EC_MONTGOMERY, or SoftHSM2's CKK_EC_EDWARDS); make one with: stunnel genkey --pkcs11 URI", where, kt)
	}
	if p := attrs[1].Value; !bytes.Equal(p, x25519OID) && !bytes.Equal(p, curve25519Name) {
		return errorf(KindObject, nil, "%s is not on curve X25519 (CKA_EC_PARAMS % x; Ed25519 keys cannot do X25519)", where, p)
	}
	// A public object needs no login: whoever can open the token (another
	// user's process on a shared HSM, anyone who can read SoftHSM2's
	// token directory) could do X25519 with our static key, and so
	// impersonate this host, without the PIN. Named by its URI (no
	// PIN source in it), since the object's label alone may be ambiguous.
	if publicObjectRefused(k.loginRequired, isTrue(attrs[5].Value)) {
		return errorf(KindObject, nil, "key %s is a public object (CKA_PRIVATE false): anyone who can open the token may use it without the PIN; a static key must be private: make one with: stunnel genkey --pkcs11 URI", k.uri.KeyString())
	}
	if !isTrue(attrs[2].Value) || isTrue(attrs[3].Value) {
		return errorf(KindObject, nil, "%s could leave the token (it must be CKA_SENSITIVE and not CKA_EXTRACTABLE); make one with: stunnel genkey --pkcs11 URI", where)
	}
	if !isTrue(attrs[4].Value) {
		return errorf(KindObject, nil, "%s does not allow derivation (CKA_DERIVE false)", where)
	}
	return nil
}

// originLocked reads where the key came from (origin.go).
func (k *Key) originLocked() Origin {
	attrs, err := k.ctx.GetAttributeValue(k.sess, k.obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
	})
	if err != nil || len(attrs) != 3 {
		return Origin{}
	}
	return Origin{Known: true, Local: isTrue(attrs[0].Value), NeverExtractable: isTrue(attrs[1].Value), AlwaysSensitive: isTrue(attrs[2].Value)}
}

// storedPublicLocked reads the public key object's CKA_EC_POINT, if there is one.
func (k *Key) storedPublicLocked() (handshake.PublicKey, bool) {
	obj, err := findKey(k.ctx, k.sess, &k.uri, pkcs11.CKO_PUBLIC_KEY)
	if err != nil {
		return handshake.PublicKey{}, false
	}
	attrs, err := k.ctx.GetAttributeValue(k.sess, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return handshake.PublicKey{}, false
	}
	return parseECPoint(attrs[0].Value)
}

// deriveLocked is one C_DeriveKey(CKM_ECDH1_DERIVE, CKD_NULL) with the raw
// 32-byte peer key. The shared secret comes out as a session object that
// is read and destroyed at once; the private key itself is never read.
func (k *Key) deriveLocked(peer handshake.PublicKey) ([32]byte, error) {
	var out [32]byte
	k.ops.Add(1)
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE,
		pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, peer[:]))}
	h, err := k.ctx.DeriveKey(k.sess, mech, k.obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
	})
	if err != nil {
		return out, err
	}
	defer k.ctx.DestroyObject(k.sess, h)
	attrs, err := k.ctx.GetAttributeValue(k.sess, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return out, err
	}
	v := attrs[0].Value
	if len(v) != 32 {
		clear(v)
		return out, fmt.Errorf("the token returned a %d-byte shared secret, want 32", len(v))
	}
	copy(out[:], v)
	clear(v)
	return out, nil
}

// isInputError: the token refused the peer key or the parameters, and the
// session is still fine. Everything else drops the session (see SharedSecret).
func isInputError(err error) bool {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe {
	case pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_ARGUMENTS_BAD, pkcs11.CKR_DATA_INVALID,
		pkcs11.CKR_DATA_LEN_RANGE, pkcs11.CKR_DOMAIN_PARAMS_INVALID, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID:
		return true
	}
	return false
}

func (k *Key) tokenName() string  { return tokenName(&k.uri) }
func (k *Key) objectName() string { return objectName(&k.uri) }

func tokenName(u *URI) string {
	if u.Token != "" {
		return fmt.Sprintf("token %q", u.Token)
	}
	return fmt.Sprintf("token with serial %q", u.Serial)
}

func objectName(u *URI) string {
	if u.Object != "" {
		return fmt.Sprintf("%q", u.Object)
	}
	return fmt.Sprintf("with id %x", u.ID)
}

func isTrue(v []byte) bool { return len(v) > 0 && v[0] != 0 }

// bytesToUint reads a CK_ULONG attribute (native byte order, which on
// every Linux machine stunnel runs on is little-endian).
func bytesToUint(v []byte) uint64 {
	var n uint64
	for i := len(v) - 1; i >= 0; i-- {
		n = n<<8 | uint64(v[i])
	}
	return n
}

// parseECPoint takes CKA_EC_POINT: a DER OCTET STRING around the 32 bytes
// (what SoftHSM2 and the standard give), or the 32 bytes bare (some tokens).
func parseECPoint(v []byte) (handshake.PublicKey, bool) {
	var pub handshake.PublicKey
	switch {
	case len(v) == 34 && v[0] == 0x04 && v[1] == 32:
		copy(pub[:], v[2:])
	case len(v) == 32:
		copy(pub[:], v)
	default:
		return pub, false
	}
	return pub, true
}

// trimLabel drops the blank padding of CK_TOKEN_INFO's fixed-size fields.
func trimLabel(s string) string { return strings.TrimRight(s, " \x00") }

// URI is the canonical form of the URI the key was opened with (no secret
// in it): what a reload compares.
func (k *Key) URI() string { return k.uri.String() }

// PinFile is the path of the PIN file the key reads at each login ("" if
// none): a reload compares it too.
func (k *Key) PinFile() string { return k.pinFile }
