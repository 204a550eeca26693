// Command stunnel is the single binary of the product: the subcommands of
// PRODUCT.md and nothing else. Each subcommand lives in its own file and
// returns its exit code; main only dispatches.
package main

import (
	"fmt"
	"os"
)

// Exit codes fixed by PRODUCT.md.
const (
	exitOK        = 0
	exitRuntime   = 1 // runtime failure; `show`: no tunnel runs
	exitBadConfig = 2 // bad config, malformed key, bad usage
)

type command struct {
	name  string
	usage string
	run   func(args []string) int
}

var commands = []command{
	{"genkey", "genkey                 print a new private key", cmdGenkey},
	{"pubkey", "pubkey                 read a private key on stdin, print its public key", cmdPubkey},
	{"check", "check -c FILE          validate a config without touching the system", cmdCheck},
	{"up", "up -c FILE             run the tunnel in the foreground (SIGHUP reloads)", cmdUp},
	{"show", "show [-c FILE] [--json] status of running tunnels", cmdShow},
	{"directory", "directory put|delete|list -c FILE  peer records in the etcd directory", cmdDirectory},
	{"demo", "demo                   two namespaced hosts, a tunnel, ping and throughput (root)", cmdDemo},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: stunnel COMMAND [options]")
	for _, c := range commands {
		fmt.Fprintln(os.Stderr, "  stunnel "+c.usage)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitBadConfig)
	}
	name := os.Args[1]
	for _, c := range commands {
		if c.name == name {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		os.Exit(exitOK)
	}
	fmt.Fprintf(os.Stderr, "stunnel: unknown command %q; run `stunnel help` for the list\n", name)
	os.Exit(exitBadConfig)
}
