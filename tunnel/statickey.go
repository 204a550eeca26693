package tunnel

import (
	"errors"
	"fmt"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/pkcs11key"
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
// compares the URI, since its config has no private key to compare, and
// the PIN file the key reads at each login.
type namedKey interface {
	URI() string
	PinFile() string
}

// tokenKey is a static key in a token (pkcs11key.Key) as show reports it:
// where it came from, and whether the token answers.
type tokenKey interface {
	namedKey
	Origin() pkcs11key.Origin
	Hung() bool
	Unanswered() uint64
}

// staticKeyStatus is show's static_key: nil unless the key is in a token.
func (d *Device) staticKeyStatus() *StaticKeyStatus {
	k, ok := d.host.Config().Static.(tokenKey)
	if !ok {
		return nil
	}
	return &StaticKeyStatus{URI: k.URI(), Origin: k.Origin().String(), Hung: k.Hung(), Unanswered: k.Unanswered()}
}

// staticKeyChanged reports whether a reloaded [interface] names another
// static key than the running one.
func (d *Device) staticKeyChanged(i conf.Interface) bool {
	named, _ := d.host.Config().Static.(namedKey)
	switch {
	case i.PKCS11 != nil:
		return named == nil || !pkcs11key.SameKey(named.URI(), i.PKCS11.URI)
	case named != nil:
		return true
	}
	return !i.PrivateKey.PublicKey().Equal(d.host.PublicKey())
}

// pinFileChanged reports whether a reloaded [interface] names the running
// token key with another PIN file: the running key would go on reading the
// one it was opened with, so the new one would be checked and never used.
func (d *Device) pinFileChanged(i conf.Interface) bool {
	named, _ := d.host.Config().Static.(namedKey)
	return named != nil && i.PKCS11 != nil && named.PinFile() != i.PKCS11.PinFile
}

// peerWithOwnKey refuses a config with a peer whose public key is this
// host's own. conf refuses it when the key is in the file, and the daemon
// once it knows a token key's public key (conf.Config.SetTokenPublicKey);
// this is the device's own check, so that no path (a reload, a directory
// record, a caller that skipped conf's) runs a peer that is this host.
func peerWithOwnKey(cfg *conf.Config, own handshake.PublicKey) error {
	for _, pr := range cfg.Peers {
		if !pr.PublicKey.Equal(own) {
			continue
		}
		if pr.Line == 0 { // a directory record: no line of the file
			return fmt.Errorf("%s: directory peer %q has this host's own public key", cfg.Path, pr.ID)
		}
		return fmt.Errorf("%s:%d: public_key of peer %q is this host's own public key", cfg.Path, pr.Line, pr.ID)
	}
	return nil
}
