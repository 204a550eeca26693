package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"stunnel/tickets"
)

// `stunnel tickets group-secret -o FILE` makes the secret a gateway group
// seals its etcd ticket ring with ([tickets] group_secret_file): 32 random
// bytes in hex, mode 0600, never printed. Copy the file to every gateway
// of the group.
func runGroupSecret(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tickets group-secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "the new group secret file")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitBadConfig
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "stunnel tickets group-secret: give the new file with -o FILE (and nothing else), e.g. -o /etc/stunnel/group.secret")
		return exitBadConfig
	}
	g, err := tickets.NewGroupSecret(nil)
	if err != nil {
		fmt.Fprintf(stderr, "stunnel tickets group-secret: %v\n", err)
		return exitRuntime
	}
	defer g.Zero()
	if err := tickets.WriteGroupSecretFile(*out, g); err != nil {
		// 2 is "bad usage or the file exists" (README); any other failure
		// (a missing directory, a full disk, a directory fsync that failed
		// after the file was written) is a runtime failure, 1, as for
		// `tickets genkey`: a script must not read it as "already there".
		if errors.Is(err, os.ErrExist) {
			fmt.Fprintf(stderr, "stunnel tickets group-secret: %v (an existing file is never overwritten)\n", err)
			return exitBadConfig
		}
		fmt.Fprintf(stderr, "stunnel tickets group-secret: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s: a new group secret (mode 0600); copy it to every gateway of the group and name it in [tickets] group_secret_file\n", *out)
	return exitOK
}
