package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"stunnel/conf"
)

func cmdCheck(args []string) int { return runCheck(args, os.Stdout, os.Stderr) }

// runCheck validates a config (and reads its key files) without touching the
// system: every problem goes to stderr as FILE:LINE: message.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config `FILE` to validate")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stunnel check -c FILE   (validates a config; exit 0 valid, 2 invalid)")
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "stunnel check: no config given; use: stunnel check -c FILE")
		return exitBadConfig
	}
	c, err := conf.Load(*path)
	if err != nil {
		var problems *conf.Errors
		if errors.As(err, &problems) {
			for _, p := range *problems {
				fmt.Fprintln(stderr, p)
			}
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		}
		return exitBadConfig
	}
	// A key in a token: open it, so a wrong PIN or a missing key shows now.
	_, closeKey, err := openStaticKey(c, nil, func(line string) { fmt.Fprintln(stderr, line) })
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitBadConfig
	}
	closeKey()
	c.Interface.PrivateKey.Zero()
	for i := range c.Peers {
		c.Peers[i].PresharedKey.Zero()
	}
	fmt.Fprintf(stdout, "%s: ok (interface %s, peer_id %q, %s)\n", *path, c.Interface.Name, c.Interface.PeerID, plural(len(c.Peers), "peer"))
	return exitOK
}
