//go:build cgo

package pkcs11key

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"stunnel/handshake"
	"stunnel/internal/softhsmtest"
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

// importKey stores priv in the token under u's label, as a key imported by
// some other tool would be: sealed (sensitive, not extractable: it cannot
// leave the token now, though a copy was outside it), or not.
func importKey(t *testing.T, k *Key, u *URI, priv handshake.PrivateKey, sealed bool) {
	t.Helper()
	withSession(t, k, u, func(sess pkcs11.SessionHandle) {
		_, err := moduleOf(t, k).CreateObject(sess, softhsmtest.ImportedX25519(u.Object, priv, sealed))
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
		importKey(t, k, u, other, false)
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

// TestImportedKeyWarned: a key imported into the token, sealed there now,
// is opened, with one line saying a copy of it may exist outside the
// token; a key generated in the token gets none.
func TestImportedKeyWarned(t *testing.T) {
	tok, _, k := newTokenKey(t)
	if w, o := k.OriginWarning(), k.Origin(); w != "" || !o.Generated() || o.String() != "generated" {
		t.Fatalf("a generated key: origin %+v (%s), warning %q; want generated, no warning", o, o, w)
	}
	u := mustParse(t, tok.URI("imported"))
	priv, _ := handshake.GeneratePrivateKey(nil)
	importKey(t, k, u, priv, true)
	ik, err := Open(u, "")
	if err != nil {
		t.Fatalf("Open of an imported, sealed key: %v", err)
	}
	defer ik.Close()
	if ik.Public() != priv.PublicKey() {
		t.Fatal("the imported key's public key is not the one imported")
	}
	w := ik.OriginWarning()
	want := `token "gw": key "imported": it was imported into the token (CKA_LOCAL false), so a copy of it may exist outside the token`
	if !strings.HasPrefix(w, want) || strings.Contains(w, "\n") {
		t.Fatalf("an imported key's warning: %q, want one line starting %q", w, want)
	}
	if o := ik.Origin(); o.Generated() || o.String() != "imported" {
		t.Fatalf("an imported key's origin: %+v (%s)", o, o)
	}
}
