package main

import (
	"strings"
	"testing"

	"stunnel/handshake"
)

// TestPKCS11EmptyURIRefused: `--pkcs11 "$URI"` with an empty variable is a
// bad URI (exit 2), not the command without --pkcs11: genkey would print a
// private key in the clear where a token key was asked for, and pubkey
// would read a key from stdin.
func TestPKCS11EmptyURIRefused(t *testing.T) {
	priv, _ := handshake.GeneratePrivateKey(nil)
	for _, args := range [][]string{{"genkey", "--pkcs11", ""}, {"genkey", "--pkcs11="}, {"pubkey", "--pkcs11", ""}, {"pubkey", "-pkcs11="}} {
		out, stderr, code := runStunnel(t, priv.Base64()+"\n", args...)
		if code != 2 || out != "" || !strings.Contains(stderr, `must start with "pkcs11:"`) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, nothing on stdout, a bad-URI line", args, code, out, stderr)
		}
	}
}
