package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"stunnel/tickets"
)

// `stunnel tickets` manages ticket-key files offline (docs/CONFIGURATION.md,
// [tickets] key_file): genkey makes a new file with one key, add appends a key
// (and drops keys whose decrypt-only life has ended), list prints names and
// states. Secrets are written only to the file, never printed.

// The forms against a running tunnel (list|add|retire with -c/-i, or no
// file) go through the control socket: cmdTickets in admin.go decides.

const ticketsUsage = `usage:
  stunnel tickets genkey -o FILE [lifetime flags]  new key file with one fresh key (mode 0600)
  stunnel tickets group-secret -o FILE            new group secret for [tickets] ring = "etcd" (mode 0600)
  stunnel tickets add [lifetime flags] FILE        append a fresh key to FILE, drop ended keys
  stunnel tickets list FILE                        names, states and times of FILE's keys
  stunnel tickets list|add [-c CONFIG | -i NAME]  a running tunnel's ring (officer role); add: a fresh random key
                                                  in memory, refused when the ring comes from key_file or etcd
  stunnel tickets retire [-c CONFIG | -i NAME] KEY-ID  erase one key of a running tunnel's ring in memory,
                                                  refused when the ring comes from key_file or etcd
lifetime flags: --encrypt-decrypt-lifetime 2h --decrypt-lifetime 13h --start-in 0s
  (--start-in delays the new key's encrypt-decrypt life, so every gateway sharing the
   file has re-read it (SIGHUP) before any of them seals with it)`

func runTickets(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, ticketsUsage)
		return exitBadConfig
	}
	verb, rest := args[0], args[1:]
	fs := flag.NewFlagSet("tickets "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, ticketsUsage) }
	out := fs.String("o", "", "the new key file (genkey)")
	ed := fs.Duration("encrypt-decrypt-lifetime", tickets.DefaultEncryptDecryptLifetime, "how long the new key seals and opens")
	do := fs.Duration("decrypt-lifetime", tickets.DefaultDecryptLifetime, "how long it then only opens")
	startIn := fs.Duration("start-in", 0, "delay before the new key starts sealing")
	cfg := fs.String("c", "", "config of a running tunnel (control socket forms)")
	switch verb {
	case "genkey", "add", "list", "retire":
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, ticketsUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "stunnel tickets: unknown subcommand %s\n%s\n", quoteArg(verb), ticketsUsage)
		return exitBadConfig
	}
	if err := fs.Parse(rest); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitBadConfig
	}
	if *cfg != "" || verb == "retire" {
		fmt.Fprintf(stderr, "stunnel tickets %s: a running tunnel's ring is reached with -c CONFIG or -i NAME and no key file\n", verb)
		return exitBadConfig
	}
	if *ed <= 0 || *do <= 0 || *startIn < 0 {
		fmt.Fprintln(stderr, "stunnel tickets: lifetimes must be positive and --start-in not negative")
		return exitBadConfig
	}
	now := time.Now().UTC().Truncate(time.Second)
	switch verb {
	case "genkey":
		if *out == "" || fs.NArg() > 0 {
			fmt.Fprintln(stderr, "stunnel tickets genkey: give the new file with -o FILE (and nothing else)")
			return exitBadConfig
		}
		if _, err := os.Lstat(*out); !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "stunnel tickets genkey: %s exists; use `stunnel tickets add %s` to add a key to it\n", *out, *out)
			return exitBadConfig
		}
		return writeNewKey(stdout, stderr, "genkey", *out, nil, now.Add(*startIn), *ed, *do)
	case "add":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "stunnel tickets add: give exactly one key file, e.g. stunnel tickets add /etc/stunnel/ticket.keys")
			return exitBadConfig
		}
		keys, err := tickets.ReadKeyFile(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "stunnel tickets add: %v\n", err)
			return exitBadConfig
		}
		return addKey(stdout, stderr, fs.Arg(0), keys, now, now.Add(*startIn), *ed, *do)
	default: // list FILE
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "stunnel tickets list: give a key file, or -c CONFIG for a running tunnel")
			return exitBadConfig
		}
		keys, err := tickets.ReadKeyFile(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "stunnel tickets list: %v\n", err)
			return exitBadConfig
		}
		fmt.Fprintln(stdout, "NAME                             STATE            CREATED               DECRYPT-ONLY FROM     ERASED AT")
		for i := range keys {
			k := &keys[i]
			fmt.Fprintf(stdout, "%s %-16s %s  %s  %s\n", k.NameHex(), k.State(now), k.Created.UTC().Format(time.RFC3339),
				k.EncryptUntil().UTC().Format(time.RFC3339), k.End().UTC().Format(time.RFC3339))
			k.Erase()
		}
		return exitOK
	}
}

// addKey is `tickets add`: it writes back the keys read from path less
// those whose decrypt-only life has ended at now, plus a fresh key. It owns
// keys: every one, written back or dropped, is erased before it returns.
// (Compacting keys in place, as it did, left stale copies of secrets past
// the kept ones, dropped keys among them, and appending the new key could
// move the kept ones to a new array and leave the old one unerased.)
func addKey(stdout, stderr io.Writer, path string, keys []tickets.Key, now, created time.Time, ed, do time.Duration) int {
	defer eraseKeys(keys)
	kept := make([]tickets.Key, 0, len(keys)+1) // room for the new key: no second copy
	for i := range keys {
		if keys[i].State(now) != tickets.KeyExpired {
			kept = append(kept, keys[i])
		}
	}
	return writeNewKey(stdout, stderr, "add", path, kept, created, ed, do)
}

// eraseKeys zeroes the secrets of keys.
func eraseKeys(keys []tickets.Key) {
	for i := range keys {
		keys[i].Erase()
	}
}

// writeNewKey appends a fresh key to keys, writes them to path (atomically,
// 0600) and prints the new key's name. It erases keys, the new key and
// every copy it makes.
func writeNewKey(stdout, stderr io.Writer, verb, path string, keys []tickets.Key, created time.Time, ed, do time.Duration) int {
	defer eraseKeys(keys)
	k, err := tickets.GenerateKey(nil, created, ed, do)
	if err != nil {
		fmt.Fprintf(stderr, "stunnel tickets %s: %v\n", verb, err)
		return exitRuntime
	}
	defer k.Erase()
	all := append(keys, k) // keys' array when it has room, else a new one
	defer eraseKeys(all)
	if err := tickets.WriteKeyFile(path, all); err != nil {
		fmt.Fprintf(stderr, "stunnel tickets %s: %v\n", verb, err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s %s: key %s, encrypt-decrypt from %s for %v, then decrypt-only for %v\n",
		path, verb, k.NameHex(), created.Format(time.RFC3339), ed, do)
	return exitOK
}
