package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"stunnel/handshake"
)

// maxKeyInput bounds what pubkey reads: a key is 44 bytes of base64.
const maxKeyInput = 4096

func cmdPubkey(args []string) int { return runPubkey(args, os.Stdin, os.Stdout, os.Stderr) }

// runPubkey reads a private key and prints its public key. Errors never echo
// the input: it may be a real key with a typo.
func runPubkey(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pubkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stunnel pubkey [PRIVATE.key]   (prints the public key; reads stdin without a file)")
		fmt.Fprintln(stderr, "       stunnel pubkey --pkcs11 URI   (prints the public key of a key in a PKCS#11 token)")
	}
	pkcs11URI := fs.String("pkcs11", "", "")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitBadConfig // flag has printed the problem and usage
	}
	// One optional file argument, so `sudo stunnel pubkey /etc/stunnel/x.key`
	// works where `sudo stunnel pubkey < x.key` cannot: the redirect runs in
	// the caller's shell, without root. The first word after the flags is
	// the file; a second one is the extra word, and is named as such.
	var file string
	if fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "stunnel pubkey: unexpected argument %s after the key file %s\n", quoteArg(fs.Arg(1)), quoteArg(file))
		fs.Usage()
		return exitBadConfig
	}
	if pkcs11Given(fs) {
		if file != "" {
			// Not a file to read as well: the key is the token's. Refused,
			// not ignored, so a script's mistake is seen.
			fmt.Fprintf(stderr, "stunnel pubkey: unexpected argument %s: --pkcs11 URI reads the key from the token, not from a file\n", quoteArg(file))
			return exitBadConfig
		}
		return runTokenKeyCommand("pubkey", *pkcs11URI, false, stdout, stderr)
	}
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			// The file is named masked: `stunnel pubkey KEY`, the key
			// itself given where its file belongs, is a likely slip.
			fmt.Fprintf(stderr, "stunnel pubkey: cannot open %s: %v (run it as a user who may read the key, e.g. with sudo)\n", quoteArg(file), unwrapStatError(err))
			return exitBadConfig
		}
		defer f.Close()
		stdin = f
	}
	buf := make([]byte, maxKeyInput+1)
	defer clear(buf)
	n, err := io.ReadFull(stdin, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		// An unreadable key (a directory given for the file, say) is bad
		// input like a malformed one: exit 2, as README's table says.
		what := "the key from stdin"
		if file != "" && file != "-" {
			what = quoteArg(file)
		}
		fmt.Fprintf(stderr, "stunnel pubkey: cannot read %s: %v; give the file stunnel genkey wrote\n", what, unwrapStatError(err))
		return exitBadConfig
	}
	if n > maxKeyInput {
		fmt.Fprintln(stderr, "stunnel pubkey: the input is too long to be a private key; give it a file written by stunnel genkey")
		return exitBadConfig
	}
	k, err := handshake.ParsePrivateKeyBytes(bytes.TrimSpace(buf[:n])) // buf is cleared: no string of the key
	if err != nil || k.IsZero() {
		fmt.Fprintln(stderr, "stunnel pubkey: the input does not hold a private key (base64 of 32 bytes, as stunnel genkey prints)")
		return exitBadConfig
	}
	defer k.Zero()
	fmt.Fprintln(stdout, k.PublicKey())
	return exitOK
}
