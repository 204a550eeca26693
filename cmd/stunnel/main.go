// Command stunnel is the single binary of the product: the subcommands listed
// in README.md ("Operating it") and nothing else. Each subcommand lives in its own file and
// returns its exit code; main only dispatches.
package main

import (
	"fmt"
	"os"
	"strconv"

	"stunnel/conf"
)

// Exit codes, a contract with scripts and systemd (README.md, "Operating it").
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
	{"genkey", "genkey                 print a new private key\n" +
		"  stunnel genkey --pkcs11 URI    make a key pair in a PKCS#11 token, print its public key", cmdGenkey},
	{"pubkey", "pubkey [FILE]          read a private key from FILE (or stdin), print its public key\n" +
		"  stunnel pubkey --pkcs11 URI    print the public key of a key in a PKCS#11 token", cmdPubkey},
	{"check", "check -c FILE          validate a config without touching the system", cmdCheck},
	{"up", "up -c FILE             run the tunnel in the foreground (SIGHUP reloads)", cmdUp},
	{"show", "show [-c FILE | -i NAME] [--json | --metrics]  status of running tunnels, or of the one named (--metrics: Prometheus text)", cmdShow},
	{"directory", "directory put|delete|list -c FILE  peer records in the etcd directory", cmdDirectory},
	{"demo", "demo                   two namespaced hosts, a tunnel, ping and throughput (root)", cmdDemo},
	{"version", "version                version, Go version and build features", cmdVersion},
	{"rekey", "rekey [-c FILE | -i NAME] PEER       new handshake with PEER now (operate role)", cmdRekey},
	{"disconnect", "disconnect [-c FILE | -i NAME] PEER  drop PEER's sessions (operate role)", cmdDisconnect},
	{"reload", "reload [-c FILE | -i NAME]           the tunnel re-reads its own config (up -c FILE), like SIGHUP (operate role)", cmdReload},
	{"state", "state save [-c FILE | -i NAME]       save sessions to the state file now (operate role)", cmdState},
	{"tickets", "tickets genkey -o FILE | group-secret -o FILE | add|list FILE | list|add|retire [-c FILE | -i NAME] [ARG]  ticket keys", cmdTickets},
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
	fmt.Fprintf(os.Stderr, "stunnel: unknown command %s; run `stunnel help` for the list\n", quoteArg(name))
	os.Exit(exitBadConfig)
}

// quoteArg quotes a command-line word that an error names (an unknown
// command, an unexpected argument, a file that cannot be opened) with
// anything key-shaped masked, as check masks a value: `stunnel pubkey KEY`
// or a ticket key line pasted after `tickets list` would otherwise print
// the key on stderr, which scripts log and the journal keeps.
func quoteArg(s string) string { return conf.HideKeys(strconv.Quote(s)) }
