package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"stunnel/handshake"
)

func cmdGenkey(args []string) int { return runGenkey(args, os.Stdout, os.Stderr) }

// runGenkey prints a new private key. If stdout is a file that group or
// others can read it warns: `stunnel up` would refuse that key file anyway.
func runGenkey(args []string, stdout io.Writer, stderr io.Writer) int {
	fs := flag.NewFlagSet("genkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stunnel genkey > FILE   (prints a new private key)")
		fmt.Fprintln(stderr, "       stunnel genkey --pkcs11 URI   (makes a key pair in a PKCS#11 token, prints its public key)")
	}
	pkcs11URI := fs.String("pkcs11", "", "")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if pkcs11Given(fs) {
		return runTokenKeyCommand("genkey", *pkcs11URI, true, stdout, stderr)
	}
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		fmt.Fprintf(stderr, "stunnel genkey: %v\n", err)
		return exitRuntime
	}
	defer k.Zero()
	if _, err := fmt.Fprintln(stdout, k.Base64()); err != nil {
		fmt.Fprintf(stderr, "stunnel genkey: writing the key: %v\n", err)
		return exitRuntime
	}
	if f, ok := stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o044 != 0 {
			fmt.Fprintf(stderr, "stunnel genkey: warning: the key file is readable by group or others (mode %04o); chmod 600 it, or write it under umask 077\n", fi.Mode().Perm())
		}
	}
	return exitOK
}

// parseFlags parses a subcommand's flags and refuses positional arguments.
// done is true when the command must return code at once (usage or -h).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK, true
		}
		return exitBadConfig, true // flag has printed the problem and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "stunnel %s: unexpected argument %s\n", fs.Name(), quoteArg(fs.Arg(0)))
		fs.Usage()
		return exitBadConfig, true
	}
	return 0, false
}
