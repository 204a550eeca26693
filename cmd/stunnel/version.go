package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"stunnel/internal/buildinfo"
)

// Optional features this binary can be built with. A build-tagged file
// overrides the "no" with buildinfo.SetFeature from its init function.
func init() {
	buildinfo.Declare("pkcs11", "no")
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
