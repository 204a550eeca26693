package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"stunnel/internal/buildinfo"
	"stunnel/pkcs11key"
)

// Optional features this binary can be built with. A build-tagged file may
// override a value with buildinfo.SetFeature from its init function.
// PKCS#11 needs no tag: the token code is built whenever cgo is
// (pkcs11key.Supported), as by `make build` with a C compiler present.
func init() {
	pkcs11 := "no"
	if pkcs11key.Supported {
		pkcs11 = "yes"
	}
	buildinfo.Declare("pkcs11", pkcs11)
}

func cmdVersion(args []string) int { return runVersion(args, os.Stdout, os.Stderr) }

// runVersion prints the version, the Go version and the optional features,
// one per line, so a bug report can quote it whole.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: stunnel version   (version, Go version, build features)") }
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fmt.Fprintf(stdout, "stunnel %s\n", buildinfo.VersionString())
	fmt.Fprintf(stdout, "go: %s\n", buildinfo.GoVersion())
	for _, f := range buildinfo.Features() {
		fmt.Fprintf(stdout, "%s: %s\n", f.Name, f.Value)
	}
	return exitOK
}

// plural is "1 peer", "2 peers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
