//go:build cgo

package pkcs11key

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"stunnel/handshake"
	"stunnel/internal/fakeclock"
	"stunnel/internal/softhsmtest"
)

// newTokenKey makes a token with a fresh key "site-a" and opens it.
func newTokenKey(t testing.TB) (*softhsmtest.Token, *URI, *Key) {
	t.Helper()
	tok := softhsmtest.New(t, "gw")
	u := mustParse(t, tok.URI("site-a"))
	pub, err := Generate(u, "")
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	k, err := Open(u, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	if k.Public() != pub {
		t.Fatal("Open reads another public key than Generate printed")
	}
	return tok, u, k
}

// moduleOf is the loaded module of k, for what a test does to the token
// beside the key (tokenCalls has only the key's own calls).
func moduleOf(t testing.TB, k *Key) *pkcs11.Ctx {
	t.Helper()
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m := modules.m[k.uri.ModulePath]
	if m == nil {
		t.Fatalf("module %s is not loaded", k.uri.ModulePath)
	}
	return m.ctx
}

func mustParse(t testing.TB, s string) *URI {
	t.Helper()
	u, err := ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestTokenDHEqualsGoX25519(t *testing.T) {
	_, _, k := newTokenKey(t)
	pub := k.Public()
	tokenPub, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		peer, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		want, err := peer.ECDH(tokenPub)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.SharedSecret(handshake.PublicKey(peer.PublicKey().Bytes()))
		if err != nil {
			t.Fatalf("SharedSecret: %v", err)
		}
		if string(got[:]) != string(want) {
			t.Fatal("the token's X25519 differs from crypto/ecdh's")
		}
	}
}

// TestKeyNeverLeavesToken reads the key object's attributes through the
// same module: sensitive, not extractable, and asking for its value fails.
func TestKeyNeverLeavesToken(t *testing.T) {
	_, u, k := newTokenKey(t)
	k.mu.Lock()
	defer k.mu.Unlock()
	attrs, err := k.ctx.GetAttributeValue(k.sess, k.obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil), // generated in the token, never imported
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"CKA_SENSITIVE", "CKA_EXTRACTABLE", "CKA_ALWAYS_SENSITIVE", "CKA_NEVER_EXTRACTABLE", "CKA_TOKEN", "CKA_LOCAL"} {
		want := name != "CKA_EXTRACTABLE"
		if isTrue(attrs[i].Value) != want {
			t.Errorf("%s of %s is %v, want %v", name, u.Object, isTrue(attrs[i].Value), want)
		}
	}
	_, err = k.ctx.GetAttributeValue(k.sess, k.obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
		t.Fatalf("reading CKA_VALUE of the private key: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
}

// TestHandshakeWithTokenKey runs full handshakes in both roles between a
// token key and an in-memory key.
func TestHandshakeWithTokenKey(t *testing.T) {
	_, _, k := newTokenKey(t)
	memPriv, _ := handshake.GeneratePrivateKey(nil)
	tokCfg := &handshake.Config{PeerID: []byte("site-a"), Static: k,
		Peers: peers{"site-b": {PublicKey: memPriv.PublicKey(), ID: "site-b"}}}
	memCfg := &handshake.Config{PeerID: []byte("site-b"), PrivateKey: memPriv,
		Peers: peers{"site-a": {PublicKey: k.Public(), ID: "site-a"}}}
	before := k.Ops()
	runHandshake(t, tokCfg, memCfg, handshake.NewResponder(memCfg))
	runHandshake(t, memCfg, tokCfg, handshake.NewResponder(tokCfg))
	if n := k.Ops() - before; n != 4 {
		t.Fatalf("%d token operations for two handshakes, want 4 (2 per role)", n)
	}
}

type peers map[string]handshake.PeerInfo

func (p peers) LookupPeer(id []byte) (handshake.PeerInfo, error) {
	if i, ok := p[string(id)]; ok {
		return i, nil
	}
	return handshake.PeerInfo{}, handshake.ErrUnknownPeer
}

func runHandshake(t testing.TB, ini, resp *handshake.Config, r *handshake.Responder) {
	t.Helper()
	respPub := resp.PrivateKey.PublicKey()
	if resp.Static != nil {
		respPub = resp.Static.Public()
	}
	info, _ := ini.Peers.LookupPeer(resp.PeerID)
	in, err := handshake.NewInitiation(ini, info, 1)
	if err != nil {
		t.Fatalf("NewInitiation: %v", err)
	}
	msg := in.Message()
	handshake.NewCookieGenerator(respPub, nil).AddMACs(msg)
	reply, s2, err := r.ConsumeInitiation(msg, 2)
	if err != nil {
		t.Fatalf("ConsumeInitiation: %v", err)
	}
	s1, err := in.ConsumeResponse(reply)
	if err != nil {
		t.Fatalf("ConsumeResponse: %v", err)
	}
	if s1.SendKey != s2.RecvKey || s1.RecvKey != s2.SendKey || s1.SessionID != s2.SessionID {
		t.Fatal("the two sides derived different keys")
	}
}

func TestOpenFailures(t *testing.T) {
	tok, u, k := newTokenKey(t)
	// The PIN is checked at login, and a token stays logged in while any
	// session of this process is: close ours first, as a fresh daemon.
	k.Close()
	wrongPIN := tok.Dir + "/wrong-pin"
	if err := os.WriteFile(wrongPIN, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openPIN := tok.Dir + "/open-pin"
	if err := os.WriteFile(openPIN, []byte(softhsmtest.PIN), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		uri     string
		pinFile string
		kind    Kind
		msg     string
	}{
		{"wrong PIN", tok.URI("site-a"), wrongPIN, KindPIN, "wrong PIN"},
		{"PIN file readable by others", tok.URI("site-a"), openPIN, KindPIN, "readable by group or others"},
		{"missing object", tok.URI("nope"), "", KindObject, `no private key "nope"`},
		{"missing token", strings.Replace(tok.URI("site-a"), "token=gw", "token=other", 1), "", KindToken, `no token "other"`},
		{"missing module", strings.Replace(tok.URI("site-a"), softhsmtest.Module, "/nonexistent/lib.so", 1), "", KindModule, "no such file"},
		{"module does not load", strings.Replace(tok.URI("site-a"), softhsmtest.Module, tok.Conf, 1), "", KindModule, "does not load"},
	}
	for _, c := range cases {
		k, err := Open(mustParse(t, c.uri), c.pinFile)
		if err == nil {
			k.Close()
		}
		var e *Error
		if !errors.As(err, &e) || e.Kind != c.kind || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want kind %d with %q", c.name, err, c.kind, c.msg)
		}
		if err != nil && (strings.Contains(err.Error(), softhsmtest.PIN) || strings.Contains(err.Error(), "\n")) {
			t.Errorf("%s: error is not one line without the PIN: %q", c.name, err)
		}
	}
	// Generating over an existing key is refused.
	if _, err := Generate(u, ""); err == nil || !strings.Contains(err.Error(), "already has a key") {
		t.Fatalf("Generate over an existing key: %v", err)
	}
}

// TestRecoversFromTokenFailure: the session disappears (token reset), and
// then the token refuses our login; SharedSecret fails while it does and
// works again, without a new Open, once the token is back.
func TestRecoversFromTokenFailure(t *testing.T) {
	tok, _, k := newTokenKey(t)
	peer, _ := handshake.GeneratePrivateKey(nil)
	want, _ := handshake.MemoryKey(peer).SharedSecret(k.Public())
	closeAll := func() {
		slot, err := findSlot(k.ctx, &k.uri)
		if err != nil {
			t.Fatal(err)
		}
		if err := moduleOf(t, k).CloseAllSessions(slot); err != nil {
			t.Fatal(err)
		}
	}
	closeAll()
	if got, err := k.SharedSecret(peer.PublicKey()); err != nil || got != want {
		t.Fatalf("after the sessions were closed: %v", err)
	}
	// The token now refuses the PIN (as a token that was swapped would).
	if err := os.WriteFile(tok.PinFile, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closeAll()
	_, err := k.SharedSecret(peer.PublicKey())
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindPIN {
		t.Fatalf("with the token refusing us: %v, want a PIN error", err)
	}
	if err := os.WriteFile(tok.PinFile, []byte(softhsmtest.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := k.SharedSecret(peer.PublicKey()); err != nil || got != want {
		t.Fatalf("after the token came back: %v", err)
	}
}

// TestRecoversWhenTokenComesBack: the token's store disappears under a
// running key (a token pulled out), then comes back. SharedSecret fails
// while it is gone, saying so, and works again once it is back.
func TestRecoversWhenTokenComesBack(t *testing.T) {
	tok, _, k := newTokenKey(t)
	peer, _ := handshake.GeneratePrivateKey(nil)
	want, _ := handshake.MemoryKey(peer).SharedSecret(k.Public())
	if err := os.Rename(tok.Dir+"/tokens", tok.Dir+"/pulled"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := k.SharedSecret(peer.PublicKey())
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindToken || !strings.Contains(err.Error(), `token "gw"`) {
			t.Fatalf("with the token gone: %v, want a missing-token error", err)
		}
	}
	if err := os.Rename(tok.Dir+"/pulled", tok.Dir+"/tokens"); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.lastReinit = time.Time{} // as if reinitInterval had passed, without sleeping
	k.mu.Unlock()
	if got, err := k.SharedSecret(peer.PublicKey()); err != nil || got != want {
		t.Fatalf("after the token came back: %v", err)
	}
}

// newClockedTokenKey is newTokenKey on a fake clock, with a peer's public
// key and the shared secret a handshake with it must come to.
func newClockedTokenKey(t *testing.T) (*softhsmtest.Token, *Key, *fakeclock.Clock, handshake.PublicKey, [32]byte) {
	t.Helper()
	tok, _, k := newTokenKey(t)
	clock := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	k.now = clock.Now // nothing runs on k yet: no lock needed
	peer, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := handshake.MemoryKey(peer).SharedSecret(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tok, k, clock, peer.PublicKey(), want
}

// TestReinitPacedByKeyClock: while the token is missing, a flood of
// handshakes re-initializes the module (which ends every session of it) once
// per reinitInterval of the Key's own clock, k.now, not once per handshake;
// when that clock has moved on by the interval the next handshake looks
// again, and finds the token once it is back. The clock is a fake one: the
// test never waits for the interval to pass.
func TestReinitPacedByKeyClock(t *testing.T) {
	tok, k, clock, peer, want := newClockedTokenKey(t)
	// flood is n handshakes' worth of SharedSecret calls, each refused
	// with a missing-token error; it returns the re-initializations made.
	flood := func(n int) uint64 {
		t.Helper()
		before := reinits.Load()
		for range n {
			_, err := k.SharedSecret(peer)
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindToken || !strings.Contains(err.Error(), `token "gw"`) {
				t.Fatalf("with the token gone: %v, want a missing-token error", err)
			}
		}
		return reinits.Load() - before
	}

	if err := os.Rename(tok.Dir+"/tokens", tok.Dir+"/pulled"); err != nil {
		t.Fatal(err)
	}
	if n := flood(50); n != 1 {
		t.Fatalf("50 handshakes with the token gone made %d re-initializations, want 1", n)
	}
	clock.Advance(reinitInterval - time.Millisecond)
	if n := flood(10); n != 0 {
		t.Fatalf("within reinitInterval of the key's clock: %d re-initializations, want 0", n)
	}
	clock.Advance(time.Millisecond)
	if n := flood(10); n != 1 {
		t.Fatalf("once reinitInterval has passed on the key's clock: %d re-initializations, want 1", n)
	}

	// Back, but the module sees it only after a re-initialization, and the
	// last one was just now on the key's clock.
	if err := os.Rename(tok.Dir+"/pulled", tok.Dir+"/tokens"); err != nil {
		t.Fatal(err)
	}
	if n := flood(5); n != 0 {
		t.Fatalf("token back, within reinitInterval: %d re-initializations, want 0", n)
	}
	clock.Advance(reinitInterval)
	before := reinits.Load()
	if got, err := k.SharedSecret(peer); err != nil || got != want {
		t.Fatalf("token back, reinitInterval later on the key's clock: %v", err)
	}
	if n := reinits.Load() - before; n != 1 {
		t.Fatalf("finding the token back made %d re-initializations, want 1", n)
	}
}

// generateWith makes a key pair "object" in tok beside k's key, as some
// other tool would, with the private key's template changed by set.
func generateWith(t *testing.T, tok *softhsmtest.Token, k *Key, object string, set map[uint]bool) *URI {
	t.Helper()
	u := mustParse(t, tok.URI(object))
	k.mu.Lock()
	defer k.mu.Unlock()
	sess, err := openSession(k.ctx, u, tok.PinFile, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.ctx.CloseSession(sess)
	priv := keyTemplate(u, pkcs11.CKO_PRIVATE_KEY, ckkECEdwards)
	for _, a := range priv {
		if v, ok := set[a.Type]; ok {
			a.Value = pkcs11.NewAttribute(a.Type, v).Value
		}
	}
	_, _, err = moduleOf(t, k).GenerateKeyPair(sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
		keyTemplate(u, pkcs11.CKO_PUBLIC_KEY, ckkECEdwards), priv)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestExtractableKeyRefused: a key that could leave the token (made by some
// other tool with CKA_EXTRACTABLE true) is refused at Open.
func TestExtractableKeyRefused(t *testing.T) {
	tok, _, k := newTokenKey(t)
	u := generateWith(t, tok, k, "loose", map[uint]bool{pkcs11.CKA_EXTRACTABLE: true, pkcs11.CKA_SENSITIVE: false})
	_, err := Open(u, "")
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindObject || !strings.Contains(err.Error(), "could leave the token") {
		t.Fatalf("Open of an extractable key: %v, want a refusal", err)
	}
}

// TestPublicObjectKeyRefused: a key that is sensitive and not extractable
// but a public object (CKA_PRIVATE false: usable without logging in, by
// anyone who can open the token) is refused at Open, in one line that
// names the key's URI and the attribute and holds no PIN.
func TestPublicObjectKeyRefused(t *testing.T) {
	tok, _, k := newTokenKey(t)
	u := generateWith(t, tok, k, "public", map[uint]bool{pkcs11.CKA_PRIVATE: false})
	pk, err := Open(u, "")
	if err == nil {
		pk.Close()
	}
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindObject || !strings.Contains(err.Error(), "CKA_PRIVATE false") ||
		!strings.Contains(err.Error(), u.KeyString()) {
		t.Fatalf("Open of a key with CKA_PRIVATE false: %v, want a refusal naming %s and CKA_PRIVATE", err, u.KeyString())
	}
	if strings.Contains(err.Error(), softhsmtest.PIN) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line without the PIN: %q", err)
	}
}

func TestParseECPoint(t *testing.T) {
	want := handshake.PublicKey{1, 2, 3, 31: 9}
	der := append([]byte{0x04, 32}, want[:]...)
	for _, c := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"DER OCTET STRING (SoftHSM2, the standard)", der, true},
		{"bare 32 bytes (some tokens)", want[:], true},
		{"empty", nil, false},
		{"wrong DER length", append([]byte{0x04, 31}, want[:]...), false},
		{"wrong DER tag", append([]byte{0x03, 32}, want[:]...), false},
		{"33 bytes", append([]byte{0}, want[:]...), false},
	} {
		got, ok := parseECPoint(c.in)
		if ok != c.ok || (ok && got != want) {
			t.Errorf("%s: %v %v", c.name, got, ok)
		}
	}
}

// TestLowOrderPeerKeys: X25519 with a small-order key is all zeros, from
// the token key as from an in-memory key, and costs no token operation
// (SoftHSM2 would answer CKR_GENERAL_ERROR, which looks like a failing token).
func TestLowOrderPeerKeys(t *testing.T) {
	_, _, k := newTokenKey(t)
	mem := handshake.MemoryKey(handshake.PrivateKey{1, 2, 3})
	before := k.Ops()
	for i, p := range lowOrderPoints {
		for _, top := range []byte{0, 0x80} {
			pub := handshake.PublicKey(p)
			pub[31] |= top
			got, err := k.SharedSecret(pub)
			if err != nil || got != ([32]byte{}) {
				t.Errorf("token, low-order point %d (bit 255: %x): %x %v, want zeros", i, top, got, err)
			}
			if m, _ := mem.SharedSecret(pub); m != ([32]byte{}) {
				t.Errorf("low-order point %d (bit 255: %x) is not low-order for crypto: %x", i, top, m)
			}
		}
	}
	if n := k.Ops() - before; n != 0 {
		t.Errorf("%d token operations for low-order keys, want 0", n)
	}
	// An ordinary key is not caught by the blocklist.
	peer, _ := handshake.GeneratePrivateKey(nil)
	if isLowOrder(peer.PublicKey()) {
		t.Fatal("an ordinary public key is taken for a low-order one")
	}
}
