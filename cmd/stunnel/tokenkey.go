package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/pkcs11key"
)

// openStaticKey opens the token key that cfg names, if any. A failure (a
// wrong PIN, a missing token or key, a module that does not load, a build
// without PKCS#11) is one FILE:LINE line: check exits 2 on it, up too but
// for a missing token (tokenOpenExit).
// closeKey is never nil. With log, the key logs each login, when the token
// stops answering and when it answers again, and closeKey when it had to
// leave a hung token without logging out (the stop goes on:
// pkcs11key/worker.go).
// warn gets one FILE:LINE line when a copy of the key may exist outside the
// token (imported into it, or extractable once: pkcs11key/origin.go).
func openStaticKey(cfg *conf.Config, log *slog.Logger, warn func(line string)) (key handshake.StaticKey, closeKey func(), err error) {
	k := cfg.Interface.PKCS11
	if k == nil {
		return nil, func() {}, nil
	}
	tk, err := pkcs11key.OpenLogged(k.URI, k.PinFile, log)
	if err != nil {
		return nil, func() {}, fmt.Errorf("%s:%d: private_key: %w", cfg.Path, k.Line, err)
	}
	// conf checks a peer with this host's own key for keys it holds; a
	// token's public key is known only now. Kept in cfg, it reaches every
	// later check too: each reload (reloadTokenPublicKey) and the
	// directory's merge (conf.MergePeers).
	if err := cfg.SetTokenPublicKey(tk.Public()); err != nil {
		tk.Close()
		return nil, func() {}, err
	}
	if w := tk.OriginWarning(); w != "" {
		if k.RequireLocal {
			tk.Close()
			return nil, func() {}, fmt.Errorf("%s:%d: private_key: %s (refused: pkcs11_require_local = true, line %d)", cfg.Path, k.Line, w, k.RequireLine)
		}
		warn(fmt.Sprintf("%s:%d: warning: private_key: %s", cfg.Path, k.Line, w))
	}
	if log == nil {
		return tk, func() { tk.Close() }, nil
	}
	return tk, func() {
		if err := tk.Close(); err != nil {
			log.Warn(err.Error())
		}
	}, nil
}

// tokenOpenExit is up's exit code when the token key does not open. A
// token that is not there (yet) is a runtime failure, exit 1, which the
// unit restarts every RestartSec: a USB token or an HSM slot that appears
// after boot then brings the tunnel up without an operator. So is a token
// that does not answer within Open's deadline (KindRuntime: a wedged
// reader or pcscd, an unreachable network HSM): nothing in the config is
// wrong, and a restart tries again once it answers. Everything else stays
// exit 2, which the unit does not restart: above all a wrong PIN, since
// every restart would spend one of the token's PIN tries until it locks,
// and a URI that several tokens match (KindAmbiguous), which a restart
// finds just as ambiguous: the URI must say which.
// check keeps exit 2 for all of them: it validates the config as it
// stands now.
func tokenOpenExit(err error) int {
	var te *pkcs11key.Error
	if errors.As(err, &te) && (te.Kind == pkcs11key.KindToken || te.Kind == pkcs11key.KindRuntime) {
		return exitRuntime
	}
	return exitBadConfig
}

// reloadTokenPublicKey gives a reloaded config whose key is the running
// token key that key's public key (which the running config holds since
// openStaticKey) and refuses it, as up refuses it at start, if a peer has
// it. A config that names another key is left for Device.Reload to refuse
// (the private key cannot change on a running tunnel). So is a changed
// pkcs11_require_local: the key was checked against it at start only.
func reloadTokenPublicKey(cfg, running *conf.Config) error {
	k, r := cfg.Interface.PKCS11, running.Interface.PKCS11
	if k == nil || r == nil || k.URI.KeyString() != r.URI.KeyString() {
		return nil
	}
	if k.RequireLocal != r.RequireLocal {
		line := k.RequireLine
		if line == 0 {
			line = k.Line
		}
		return &conf.Errors{{File: cfg.Path, Line: line, Msg: fmt.Sprintf("pkcs11_require_local: reload cannot change it on a running tunnel (it is %v); restart it", r.RequireLocal)}}
	}
	return cfg.SetTokenPublicKey(running.Interface.PublicKey)
}

// runTokenKeyCommand is `genkey --pkcs11 URI` (generate) and `pubkey
// --pkcs11 URI`: it prints the public key of the token's key pair.
func runTokenKeyCommand(cmd, uri string, generate bool, stdout, stderr io.Writer) int {
	u, err := pkcs11key.ParseURI(uri)
	if err != nil {
		fmt.Fprintf(stderr, "stunnel %s: %v\n", cmd, err)
		return exitBadConfig
	}
	var pub handshake.PublicKey
	if generate {
		pub, err = pkcs11key.Generate(u, "")
	} else {
		var k *pkcs11key.Key
		if k, err = pkcs11key.Open(u, ""); err == nil {
			pub = k.Public()
			if w := k.OriginWarning(); w != "" {
				fmt.Fprintf(stderr, "stunnel %s: warning: %s\n", cmd, w)
			}
			k.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "stunnel %s: %v\n", cmd, err)
		return exitBadConfig
	}
	fmt.Fprintln(stdout, pub)
	return exitOK
}

// pkcs11Given reports whether --pkcs11 was on the command line, even with
// an empty value: `--pkcs11 "$URI"` with an unset variable must fail as a
// bad URI, not run the command without --pkcs11 (genkey would print a
// private key in the clear where a token key was asked for).
func pkcs11Given(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "pkcs11" })
	return given
}
