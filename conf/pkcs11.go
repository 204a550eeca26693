package conf

import (
	"os"
	"strings"

	"stunnel/handshake"
	"stunnel/pkcs11key"
)

// PKCS11Key is a private_key that names a key in a PKCS#11 token. The
// daemon opens it (pkcs11key.Open) and uses it as its handshake.StaticKey;
// Interface.PrivateKey stays zero: the key never leaves the token. Its
// public key is known only once the token is open: Parse leaves
// Interface.PublicKey zero, and the daemon fills it in with
// SetTokenPublicKey.
type PKCS11Key struct {
	URI     *pkcs11key.URI
	PinFile string // absolute: from pin-source or pkcs11_pin_file; "" when the token needs no login
	Line    int    // line of private_key, for messages about the token
	// RequireLocal is pkcs11_require_local: the daemon refuses the key
	// unless the token says it was generated there and could never leave
	// it (pkcs11key.Origin.Generated); without it, such a key is used with
	// a warning. RequireLine is its line (0: absent).
	RequireLocal bool
	RequireLine  int
}

// The [interface] keys of a token key, kept here with their only user.
func init() { interfaceKeys = append(interfaceKeys, "pkcs11_pin_file", "pkcs11_require_local") }

// pkcs11Key checks a `private_key = "pkcs11:..."` at line: the URI parses,
// the module file exists, there is at most one PIN source and that file
// is not readable by others. It does not load the module: check and up do
// that (pkcs11key.Open) to report a wrong PIN or a missing token or key.
func (p *parser) pkcs11Key(t table, in *Interface, s string, line int) {
	u, err := pkcs11key.ParseURI(s)
	if err != nil {
		p.addf(line, "private_key: %v", err)
		return
	}
	k := &PKCS11Key{URI: u, Line: line}
	if _, err := os.Stat(u.ModulePath); err != nil {
		p.addf(line, "private_key: PKCS#11 module %s: %v; check module-path (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)", u.ModulePath, unwrapPathError(err))
	}
	pinLine := line
	k.PinFile = u.PinFile
	if name, l, ok := p.str(t, "pkcs11_pin_file"); ok {
		if k.PinFile != "" {
			p.addf(l, "pkcs11_pin_file: the pkcs11: URI already has a pin-source; give one of them")
		}
		k.PinFile, pinLine = name, l
	}
	if k.PinFile != "" {
		k.PinFile = p.path(k.PinFile)
		if err := pkcs11key.CheckPINFile(k.PinFile); err != nil {
			p.addf(pinLine, "%v", err)
		}
	}
	if v, present := t.m["pkcs11_require_local"]; present {
		k.RequireLine = p.keyLine(t, "pkcs11_require_local")
		b, ok := v.(bool)
		if !ok {
			p.addf(k.RequireLine, "pkcs11_require_local must be true or false, not %s", typeName(v))
		}
		k.RequireLocal = b
	}
	in.PKCS11 = k
}

// isPKCS11 reports whether a private_key value is a token URI.
func isPKCS11(s string) bool { return strings.HasPrefix(s, "pkcs11:") }

// strayTokenKeys refuses pkcs11_pin_file and pkcs11_require_local next to a
// key that is not in a token.
func (p *parser) strayTokenKeys(t table) {
	for _, key := range []string{"pkcs11_pin_file", "pkcs11_require_local"} {
		if _, present := t.m[key]; present {
			p.addf(p.keyLine(t, key), "%s is only for private_key = \"pkcs11:...\"; remove it", key)
		}
	}
}

// SetTokenPublicKey records pub, the public key of c's token key, as
// Interface.PublicKey, and makes the check Parse could not make without it:
// a [[peer]] with this host's own public key is refused, as crossCheck
// refuses it for a key in the file (one FILE:LINE problem). From then on c
// is like a config whose key is in the file: MergePeers skips a directory
// record with pub. The daemon calls it on the config it starts with and on
// every config it reloads.
func (c *Config) SetTokenPublicKey(pub handshake.PublicKey) error {
	c.Interface.PublicKey = pub
	for _, pr := range c.Peers {
		if pr.PublicKey.Equal(pub) {
			// Only one can match: Parse refuses two peers with one key.
			return &Errors{{File: c.Path, Line: pr.Line, Msg: ownKeyMsg(pr.ID) + " (the token key's)"}}
		}
	}
	return nil
}
