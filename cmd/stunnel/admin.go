package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"stunnel/conf"
	"stunnel/tunnel/control"
)

// The commands that act on a running tunnel through its control socket.
// Each takes -c FILE or -i NAME (or neither, when exactly one tunnel runs);
// the daemon checks the caller's role and answers. Exit 0 done; 1 refused,
// failed or no tunnel; bad usage exits badInputExit's code.

func cmdRekey(args []string) int {
	return runAdmin("rekey", "rekey", "PEER", args, os.Stdout, os.Stderr)
}

func cmdDisconnect(args []string) int {
	return runAdmin("disconnect", "disconnect", "PEER", args, os.Stdout, os.Stderr)
}

func cmdReload(args []string) int {
	return runAdmin("reload", "reload", "", args, os.Stdout, os.Stderr)
}

func cmdState(args []string) int {
	const usage = "usage: stunnel state save [-c FILE | -i NAME]"
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprintln(os.Stderr, usage)
		return exitOK
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "stunnel state: missing subcommand (save); "+usage)
		return badInputExit("state save")
	}
	if args[0] != "save" {
		fmt.Fprintf(os.Stderr, "stunnel state: unknown subcommand %s; %s\n", quoteArg(args[0]), usage)
		return badInputExit("state save")
	}
	return runAdmin("state save", "state save", "", args[1:], os.Stdout, os.Stderr)
}

func cmdTickets(args []string) int {
	const usage = "usage: stunnel tickets genkey|group-secret|list|add|retire [-c FILE | -i NAME] [ARG]"
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return exitBadConfig
	}
	if args[0] == "group-secret" { // a new file, offline (groupsecret.go)
		return runGroupSecret(args[1:], os.Stdout, os.Stderr)
	}
	switch {
	case args[0] == "genkey", isHelp(args[0]), (args[0] == "add" || args[0] == "list") && keyFileArg(args[1:]):
		return runTickets(args, os.Stdout, os.Stderr) // a key file, offline (tickets.go)
	}
	switch args[0] {
	case "list":
		return runAdmin("tickets list", "tickets list", "", args[1:], os.Stdout, os.Stderr)
	case "add":
		// No key argument: the daemon makes the key (sessions.go); a key
		// for a group goes in a key file, never on argv (/proc/PID/cmdline).
		return runAdmin("tickets add", "tickets add", "", args[1:], os.Stdout, os.Stderr)
	case "retire":
		return runAdmin("tickets retire", "tickets retire", "KEY-ID", args[1:], os.Stdout, os.Stderr)
	}
	fmt.Fprintf(os.Stderr, "stunnel tickets: unknown subcommand %s; %s\n", quoteArg(args[0]), usage)
	return exitBadConfig
}

// badInputExit is the exit code of a command that acts on a running tunnel
// when its own input is wrong: a bad flag or argument, -c and -i both, a
// -c FILE that does not parse or names no tunnel, several tunnels and no
// pick. PRODUCT.md gives rekey, disconnect, reload and state save only 0
// and "1 refused or failed": a script or an ExecReload= that checks for 1
// must not see a third code because the file it named is broken (reload
// is what one runs right after editing that file). tickets' row has
// "2 bad input", so tickets keeps 2.
func badInputExit(command string) int {
	if strings.HasPrefix(command, "tickets ") {
		return exitBadConfig
	}
	return exitRuntime
}

// runAdmin parses `[-c FILE | -i NAME] [ARG]`, sends the command and prints
// the reply: the daemon's JSON for commands that return data, one line of
// confirmation for the others. argName is "" for no argument, "[X]" for an
// optional one.
func runAdmin(cli, command, argName string, args []string, stdout, stderr io.Writer) int {
	bad := badInputExit(command)
	fs := flag.NewFlagSet(cli, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("c", "", "config `FILE` of the tunnel")
	ifname := fs.String("i", "", "interface `NAME` of the tunnel")
	usage := "usage: stunnel " + cli + " [-c FILE | -i NAME]"
	if argName != "" {
		usage += " " + argName
	}
	// Flags may come before or after the argument: stunnel rekey site-b -c FILE.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(stdout, usage)
				return exitOK
			}
			fmt.Fprintf(stderr, "stunnel %s: %v; %s\n", cli, err, usage)
			return bad
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	optional := strings.HasPrefix(argName, "[")
	var arg string
	switch {
	case command == "tickets add" && len(positional) > 0:
		// Maybe key material, or a mistyped key file: never echoed.
		fmt.Fprintf(stderr, "stunnel %s: takes no argument (the one given is not shown); on a running tunnel it adds a fresh random key to that gateway's ring; "+
			"to add a key to a key file, name an existing file (stunnel tickets genkey -o FILE makes one); %s\n", cli, usage)
		return bad
	case command == "tickets list" && len(positional) == 1 && *path == "" && *ifname == "":
		// A key file, surely, but not one that can be read (a typo): say
		// that, not "unexpected argument". Quoted masked, as check would.
		what := "is not a regular file"
		if _, err := os.Stat(positional[0]); err != nil {
			what = "cannot be read: " + unwrapStatError(err).Error()
		}
		fmt.Fprintf(stderr, "stunnel %s: key file %s %s; give an existing key file, or no argument for a running tunnel's ring; %s\n",
			cli, quoteArg(positional[0]), what, usage)
		return bad
	case len(positional) > 1 || (argName == "" && len(positional) == 1):
		fmt.Fprintf(stderr, "stunnel %s: unexpected argument %s; %s\n", cli, quoteArg(positional[len(positional)-1]), usage)
		return bad
	case len(positional) == 1:
		arg = positional[0]
	case argName != "" && !optional:
		fmt.Fprintf(stderr, "stunnel %s: missing %s; %s\n", cli, argName, usage)
		return bad
	}

	sock, picked, err := socketFor(cli, *path, *ifname)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return bad
	}
	if !picked {
		socks, err := control.Sockets()
		if err != nil {
			fmt.Fprintf(stderr, "stunnel %s: %v\n", cli, err)
			return exitRuntime
		}
		switch len(socks) {
		case 0:
			fmt.Fprintf(stderr, "stunnel %s: no tunnel running (no control socket in %s)\n", cli, control.Dir())
			return exitRuntime
		case 1:
			sock = socks[0]
		default:
			fmt.Fprintf(stderr, "stunnel %s: %d tunnels run here; pick one with -c FILE or -i NAME\n", cli, len(socks))
			return bad
		}
	}

	reply, err := control.Query(sock, command, arg)
	if err != nil {
		fmt.Fprintf(stderr, "stunnel %s: %s\n", cli, daemonMessage(command, err))
		return exitRuntime
	}
	switch command {
	case "rekey":
		fmt.Fprintf(stdout, "new handshake with %s requested\n", arg)
	case "disconnect":
		fmt.Fprintf(stdout, "%s disconnected: its sessions are dropped and zeroed\n", arg)
	case "reload":
		reportReload(stdout, stderr, cli, *path, reply)
	case "state save":
		fmt.Fprintln(stdout, "state saved")
	default:
		stdout.Write(reply)
	}
	return exitOK
}

// daemonMessage is err for the line "stunnel COMMAND: ...". The daemon's
// own refusals name the command ("rekey needs a peer ID", "state save: not
// available in this build yet", "reload failed, ..."), as its audit log
// records them; after the CLI's prefix the name would read twice, so a
// leading one is dropped here. Done in the client, not the daemon: the
// audit log and other clients keep the full message, and a daemon still
// running an older binary after an upgrade reads once too. Errors of our
// own (connecting, reading) are as they are.
func daemonMessage(command string, err error) string {
	var re *control.RemoteError
	if !errors.As(err, &re) {
		return err.Error()
	}
	for _, sep := range []string{": ", " "} {
		if rest, ok := strings.CutPrefix(re.Msg, command+sep); ok && rest != "" {
			return rest
		}
	}
	return re.Msg
}

// reportReload confirms a reload and names the file the daemon read: its
// own, the one `up -c` was given. -c FILE only picked the tunnel (by its
// [interface] name), so when FILE is another file (a copy edited in place
// of the real one) the operator is told it was not read. The reload did
// succeed: the exit stays 0. A daemon older than the file in its reply gets
// the old line.
func reportReload(stdout, stderr io.Writer, cli, given string, reply []byte) {
	var r control.ReloadReply
	if json.Unmarshal(reply, &r) != nil || r.File == "" {
		fmt.Fprintln(stdout, "configuration reloaded")
		return
	}
	fmt.Fprintf(stdout, "configuration reloaded from %s\n", r.File)
	if given != "" && !conf.SameFile(given, r.File) {
		fmt.Fprintf(stderr, "stunnel %s: note: the tunnel re-read its own config %s, not %s (-c only picks which tunnel to reload); to apply %s, put its changes in %s and reload again\n",
			cli, r.File, given, given, r.File)
	}
}

// keyFileArg reports whether a tickets add|list command names a key file
// (an existing file, and no -c or -i): then it works on the file offline.
func keyFileArg(args []string) bool {
	var file string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c" || a == "-i" || strings.HasPrefix(a, "-c=") || strings.HasPrefix(a, "-i="):
			return false
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && i+1 < len(args) {
				i++ // a lifetime flag's value
			}
		default:
			file = a
		}
	}
	if file == "" {
		return false
	}
	fi, err := os.Stat(file)
	return err == nil && fi.Mode().IsRegular()
}

// unwrapStatError drops the path from an *os.PathError: the message names
// the file already.
func unwrapStatError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// isHelp reports whether a command's first word asks for its usage, which
// then exits 0 as every command's -h does.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "help"
}
