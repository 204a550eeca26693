//go:build cgo

package pkcs11key

import "testing"

// A public key object is refused where a login protects the others, and
// accepted on a token that requires no login: we never log in there, so
// only its public objects can be found, and refusing them refuses the
// token. (SoftHSM2 always requires a login: TestPublicObjectKeyRefused
// covers the refusal end to end.)
func TestPublicObjectRefusedOnlyBehindALogin(t *testing.T) {
	for _, c := range []struct {
		loginRequired, private, refused bool
	}{
		{loginRequired: true, private: false, refused: true},
		{loginRequired: true, private: true, refused: false},
		{loginRequired: false, private: false, refused: false},
		{loginRequired: false, private: true, refused: false},
	} {
		if got := publicObjectRefused(c.loginRequired, c.private); got != c.refused {
			t.Errorf("login required %v, CKA_PRIVATE %v: refused %v, want %v", c.loginRequired, c.private, got, c.refused)
		}
	}
}
