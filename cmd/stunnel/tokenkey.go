package main

import (
	"fmt"
	"io"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/pkcs11key"
)

// openStaticKey opens the token key that cfg names, if any. A failure (a
// wrong PIN, a missing token or key, a module that does not load, a build
// without PKCS#11) is one FILE:LINE line: check and up exit 2 on it.
// closeKey is never nil.
func openStaticKey(cfg *conf.Config) (key handshake.StaticKey, closeKey func(), err error) {
	k := cfg.Interface.PKCS11
	if k == nil {
		return nil, func() {}, nil
	}
	tk, err := pkcs11key.Open(k.URI, k.PinFile)
	if err != nil {
		return nil, func() {}, fmt.Errorf("%s:%d: private_key: %v", cfg.Path, k.Line, err)
	}
	// conf checks this for keys it holds; a token's public key is known only now.
	for _, p := range cfg.Peers {
		if p.PublicKey.Equal(tk.Public()) {
			tk.Close()
			return nil, func() {}, fmt.Errorf("%s:%d: public_key of peer %q is this host's own public key (the token key's)", cfg.Path, p.Line, p.ID)
		}
	}
	return tk, func() { tk.Close() }, nil
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
