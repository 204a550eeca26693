package handshake

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// countingKey is a StaticKey that counts its operations and can be made to
// fail, like a token that was pulled out.
type countingKey struct {
	inner StaticKey
	mu    sync.Mutex
	calls int   // guarded by mu
	fail  error // guarded by mu: returned instead of a result when set
}

func (k *countingKey) Public() PublicKey { return k.inner.Public() }

func (k *countingKey) SharedSecret(peer PublicKey) ([32]byte, error) {
	k.mu.Lock()
	k.calls++
	fail := k.fail
	k.mu.Unlock()
	if fail != nil {
		return [32]byte{}, fail
	}
	return k.inner.SharedSecret(peer)
}

func (k *countingKey) setFail(err error) { k.mu.Lock(); k.fail = err; k.mu.Unlock() }
func (k *countingKey) count() int        { k.mu.Lock(); defer k.mu.Unlock(); return k.calls }

// staticPair is pair() with a's key behind a countingKey and NO private key
// in a's Config: a handshake that works proves every static DH of a went
// through StaticKey.
func staticPair(t *testing.T) (*countingKey, func() (*Session, *Session), func() (*Session, *Session)) {
	clk, a, b := pair(t)
	key := &countingKey{inner: MemoryKey(a.cfg.PrivateKey)}
	a.cfg.PrivateKey = PrivateKey{}
	a.cfg.Static = key
	a.resp = NewResponder(a.cfg)
	return key, func() (*Session, *Session) { return handshake(t, clk, a, b) },
		func() (*Session, *Session) { return handshake(t, clk, b, a) }
}

func TestStaticKeyBothRoles(t *testing.T) {
	key, aInitiates, bInitiates := staticPair(t)
	sa, sb := aInitiates()
	if sa.SendKey != sb.RecvKey || sa.RecvKey != sb.SendKey || sa.SessionID != sb.SessionID {
		t.Fatal("initiator with a StaticKey: the sides derived different keys")
	}
	// IK: the initiator's static key is in ss (message 1) and se (message 2).
	if n := key.count(); n != 2 {
		t.Fatalf("initiator: %d static-key operations, want 2", n)
	}
	sb, sa = bInitiates()
	if sa.SendKey != sb.RecvKey || sa.RecvKey != sb.SendKey || sa.SessionID != sb.SessionID {
		t.Fatal("responder with a StaticKey: the sides derived different keys")
	}
	// The responder's static key is in es and ss, both in message 1.
	if n := key.count(); n != 4 {
		t.Fatalf("after both roles: %d static-key operations, want 4", n)
	}
}

func TestStaticKeyFailureIsReportedAndRecovers(t *testing.T) {
	clk, a, b := pair(t)
	key := &countingKey{inner: MemoryKey(a.cfg.PrivateKey)}
	a.cfg.PrivateKey = PrivateKey{}
	a.cfg.Static = key
	a.resp = NewResponder(a.cfg)
	gone := errors.New("token removed")
	key.setFail(gone)

	// Initiator: message 1 needs ss.
	_, err := NewInitiation(a.cfg, a.infoOf(b), 1)
	if !errors.Is(err, ErrStaticKey) || !errors.Is(err, gone) {
		t.Fatalf("NewInitiation with a failing key: %v, want ErrStaticKey wrapping the token error", err)
	}
	// Responder: message 1 from b needs es; the failure is not ErrDecrypt.
	clk.Advance(time.Second)
	_, msg := b.initiate(t, a, 2)
	_, _, err = a.resp.ConsumeInitiation(msg, 3)
	if !errors.Is(err, ErrStaticKey) || errors.Is(err, ErrDecrypt) {
		t.Fatalf("ConsumeInitiation with a failing key: %v, want ErrStaticKey", err)
	}
	// Initiator again, failing between message 1 and message 2 (se).
	key.setFail(nil)
	clk.Advance(time.Second)
	in, msg := a.initiate(t, b, 4)
	resp, _, err := b.resp.ConsumeInitiation(msg, 5)
	if err != nil {
		t.Fatal(err)
	}
	key.setFail(gone)
	if _, err := in.ConsumeResponse(resp); !errors.Is(err, ErrStaticKey) {
		t.Fatalf("ConsumeResponse with a failing key: %v, want ErrStaticKey", err)
	}
	// That initiation could not be rebuilt without the key: it is finished,
	// and the tunnel starts a new one. Once the token is back, they work.
	key.setFail(nil)
	if _, err := in.ConsumeResponse(resp); !errors.Is(err, ErrHandshakeDone) {
		t.Fatalf("ConsumeResponse after the failure: %v, want ErrHandshakeDone", err)
	}
	handshake(t, clk, a, b)
	handshake(t, clk, b, a)
}

func TestStaticKeyLowOrderPeerIsNotAKeyFailure(t *testing.T) {
	k := MemoryKey(PrivateKey{1, 2, 3})
	d := staticDH{key: k}
	if _, err := d.DH(nil, make([]byte, KeySize)); err == nil || errors.Is(err, ErrStaticKey) {
		t.Fatalf("DH with the zero point: %v, want a refusal that is not ErrStaticKey", err)
	}
	if _, err := d.DH(nil, make([]byte, 5)); err == nil {
		t.Fatal("DH with a 5-byte peer key succeeded")
	}
}

func TestMemoryKeyMatchesPrivateKey(t *testing.T) {
	priv, _ := GeneratePrivateKey(nil)
	peer, _ := GeneratePrivateKey(nil)
	k := MemoryKey(priv)
	if k.Public() != priv.PublicKey() {
		t.Fatal("MemoryKey public key differs")
	}
	s1, err := k.SharedSecret(peer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := MemoryKey(peer).SharedSecret(priv.PublicKey())
	if s1 != s2 || s1 == ([32]byte{}) {
		t.Fatal("X25519 shared secrets differ")
	}
}

// The responder wraps an in-memory key with its own copy of the private key;
// zeroing the Config's key (what session.Host.ZeroPrivateKey does) does not
// reach that copy, so Responder.Zero must, and a handshake after it must
// fail rather than run X25519 with a zeroed (clamped, public) scalar.
func TestResponderZeroOverwritesItsKeyCopy(t *testing.T) {
	clk, a, b := pair(t)
	handshake(t, clk, a, b) // the copy is in use: b answered with it
	b.cfg.PrivateKey.Zero()
	b.resp.Zero()
	if b.resp.owned == nil || b.resp.key != StaticKey(b.resp.owned) {
		t.Fatal("the responder's in-memory key is not the copy Zero overwrites")
	}
	if !b.resp.owned.priv.IsZero() {
		t.Fatal("the responder still holds the static private key after Zero")
	}
	clk.Advance(time.Second)
	_, msg := a.initiate(t, b, 0x33333333)
	if _, _, err := b.resp.ConsumeInitiation(msg, 0x44444444); !errors.Is(err, ErrStaticKey) {
		t.Fatalf("initiation answered after Zero: %v, want ErrStaticKey", err)
	}
}

// ZeroMemoryKey overwrites a MemoryKey's copy (the daemon's state-file key)
// and leaves any other StaticKey alone.
func TestZeroMemoryKey(t *testing.T) {
	priv, _ := GeneratePrivateKey(nil)
	peer, _ := GeneratePrivateKey(nil)
	k := MemoryKey(priv)
	if _, err := k.SharedSecret(peer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	ZeroMemoryKey(k)
	if !k.(*memoryKey).priv.IsZero() {
		t.Fatal("ZeroMemoryKey left the private key")
	}
	if _, err := k.SharedSecret(peer.PublicKey()); err == nil {
		t.Fatal("a zeroed MemoryKey still computes shared secrets")
	}
	other := &countingKey{inner: MemoryKey(priv)}
	ZeroMemoryKey(other) // not a MemoryKey: nothing to do, no panic
}
