//go:build cgo

package pkcs11key

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"stunnel/handshake"
)

// withSession runs f on a read-write session of u's token, logged in,
// under k's lock, as the running key would touch the token.
func withSession(t *testing.T, k *Key, u *URI, f func(sess pkcs11.SessionHandle)) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	sess, err := openSession(k.ctx, u, k.pinFile, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.ctx.CloseSession(sess)
	f(sess)
}

// deleteKey deletes the key pair that u names, as a token swapped for
// another with the same labels looks to a running key.
func deleteKey(t *testing.T, k *Key, u *URI) {
	t.Helper()
	withSession(t, k, u, func(sess pkcs11.SessionHandle) {
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
			objs, err := findObjects(k.ctx, sess, u, class)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if err := k.ctx.DestroyObject(sess, o); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// importKey stores priv in the token under u's label, extractable, as a
// key imported by some other tool would be.
func importKey(t *testing.T, k *Key, u *URI, priv handshake.PrivateKey) {
	t.Helper()
	withSession(t, k, u, func(sess pkcs11.SessionHandle) {
		_, err := moduleOf(t, k).CreateObject(sess, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, x25519OID),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, priv[:]),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestReopenRefusesAnotherKey: after the session is lost, the key that the
// URI finds when logging in again may not be the one opened (the token was
// swapped for another with the same labels, or the object replaced). It
// must not be used: not for a handshake, whose peers know another public
// key, and not at all when it could leave the token, which Open refuses.
func TestReopenRefusesAnotherKey(t *testing.T) {
	peer, _ := handshake.GeneratePrivateKey(nil)
	t.Run("extractable", func(t *testing.T) {
		_, u, k := newTokenKey(t)
		other, _ := handshake.GeneratePrivateKey(nil)
		deleteKey(t, k, u)
		importKey(t, k, u, other)
		dropSessions(t, k)
		withOther, _ := handshake.MemoryKey(other).SharedSecret(peer.PublicKey())
		got, err := k.SharedSecret(peer.PublicKey())
		if err == nil || got == withOther {
			t.Fatalf("SharedSecret used the replacing key (err %v)", err)
		}
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindObject || !strings.Contains(err.Error(), "could leave the token") {
			t.Fatalf("%v, want a refusal of a key that could leave the token", err)
		}
	})
	t.Run("another token key", func(t *testing.T) {
		_, u, k := newTokenKey(t)
		deleteKey(t, k, u)
		otherPub, err := Generate(u, "")
		if err != nil {
			t.Fatal(err)
		}
		dropSessions(t, k)
		for range 2 { // and again: the refused session is not kept
			_, err = k.SharedSecret(peer.PublicKey())
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindObject || !strings.Contains(err.Error(), `key "site-a" is not the key stunnel started with`) ||
				!strings.Contains(err.Error(), otherPub.String()) {
				t.Fatalf("%v, want a refusal of another key", err)
			}
		}
	})
}
