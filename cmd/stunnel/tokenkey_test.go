package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"stunnel/handshake"
	"stunnel/pkcs11key"
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

// TestTokenOpenExit: up exits 1 (restarted by the unit) when the token is
// not there or does not answer in time, and 2 (never restarted) when the
// config names something wrong: above all a wrong PIN, which each restart
// would spend one of the token's tries on; also a URI that several tokens
// match, which no restart can fix.
func TestTokenOpenExit(t *testing.T) {
	wrap := func(k pkcs11key.Kind, msg string) error {
		return fmt.Errorf("/etc/stunnel/a.toml:4: private_key: %w", &pkcs11key.Error{Kind: k, Msg: msg})
	}
	for _, c := range []struct {
		err  error
		want int
	}{
		{wrap(pkcs11key.KindToken, `no token "gw" in module /x.so`), exitRuntime},
		{wrap(pkcs11key.KindRuntime, `token "gw" did not answer within 30s (key "a"): failing at once until it answers`), exitRuntime},
		{wrap(pkcs11key.KindPIN, `wrong PIN for token "gw"`), exitBadConfig},
		{wrap(pkcs11key.KindObject, `token "gw" has no private key "a"`), exitBadConfig},
		{wrap(pkcs11key.KindAmbiguous, `2 tokens match token "gw" in module /x.so: say which in the pkcs11: URI with serial= (serial=1, serial=2)`), exitBadConfig},
		{wrap(pkcs11key.KindModule, "PKCS#11 module /x.so: no such file"), exitBadConfig},
		{wrap(pkcs11key.KindUnsupported, "this build has no PKCS#11 support"), exitBadConfig},
		{errors.New("/etc/stunnel/a.toml:7: public_key of peer \"b\" is this host's own"), exitBadConfig},
	} {
		if got := tokenOpenExit(c.err); got != c.want {
			t.Errorf("%v: exit %d, want %d", c.err, got, c.want)
		}
	}
}
