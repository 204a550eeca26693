package tunnel

import (
	"errors"

	"stunnel/conf"
)

// checkStaticKey refuses a config whose key is in a token when the caller
// has not opened it: the config holds no private key to fall back on.
func checkStaticKey(cfg *conf.Config, opt Options) error {
	if cfg.Interface.PKCS11 != nil && opt.StaticKey == nil {
		return errors.New("private_key is in a PKCS#11 token, but no token key was opened (Options.StaticKey)")
	}
	return nil
}

// namedKey is a static key that a URI names (pkcs11key.Key): reload
// compares the URI, since its config has no private key to compare.
type namedKey interface{ URI() string }

// staticKeyChanged reports whether a reloaded [interface] names another
// static key than the running one.
func (d *Device) staticKeyChanged(i conf.Interface) bool {
	named, _ := d.host.Config().Static.(namedKey)
	switch {
	case i.PKCS11 != nil:
		return named == nil || named.URI() != i.PKCS11.URI.String()
	case named != nil:
		return true
	}
	return !i.PrivateKey.PublicKey().Equal(d.host.PublicKey())
}
