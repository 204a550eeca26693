package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/conf"
	"stunnel/directory"
	"stunnel/handshake"
)

const directoryUsage = `usage:
  stunnel directory put -c FILE -id ID -public-key KEY -allowed-ips CIDR[,CIDR...] [-endpoint HOST:PORT] [-persistent-keepalive 25s]
  stunnel directory delete -c FILE ID
  stunnel directory list -c FILE [-json]`

// cmdDirectory edits and lists the peer records in the etcd directory named
// by a config's [directory]. Exit 0 done; 1 etcd unreachable or refused the
// request; 2 bad input (usage, config, record).
func cmdDirectory(args []string) int {
	return runDirectory(args, os.Stdout, os.Stderr)
}

func runDirectory(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, directoryUsage)
		return exitBadConfig
	}
	if isHelp(args[0]) {
		fmt.Fprintln(stderr, directoryUsage)
		return exitOK
	}
	if v := args[0]; v != "put" && v != "delete" && v != "list" {
		// Before the flags: `directory -c FILE list` or a typo is not
		// "-c FILE is required".
		fmt.Fprintf(stderr, "stunnel directory: unknown subcommand %s; the first word is put, delete or list\n%s\n", quoteArg(v), directoryUsage)
		return exitBadConfig
	}
	fs := flag.NewFlagSet("directory "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("c", "", "configuration file with a [directory] table")
	id := fs.String("id", "", "peer ID (put)")
	pub := fs.String("public-key", "", "the peer's public key, base64 (put)")
	ips := fs.String("allowed-ips", "", "comma-separated prefixes (put)")
	endpoint := fs.String("endpoint", "", "host:port, optional (put)")
	keepalive := fs.Duration("persistent-keepalive", 0, "optional, e.g. 25s (put)")
	asJSON := fs.Bool("json", false, "print records as JSON (list)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for etcd")
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "stunnel directory: "+format+"\n", a...)
		return exitBadConfig
	}
	if err := fs.Parse(args[1:]); err != nil {
		return bad("%v\n%s", err, directoryUsage)
	}
	if *timeout <= 0 {
		// Not etcd's failure: a deadline already past would be reported
		// as etcd unreachable, exit 1.
		return bad("-timeout %v must be positive, e.g. 5s", *timeout)
	}
	if *path == "" {
		return bad("-c FILE is required: the config whose [directory] names etcd\n%s", directoryUsage)
	}
	cfg, err := conf.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitBadConfig
	}
	cfg.Interface.PrivateKey.Zero() // not needed here
	dc := cfg.Directory
	if dc == nil {
		return bad("%s has no [directory] table; add etcd_endpoints and prefix (docs/CONFIGURATION.md)", *path)
	}

	var op func(ctx context.Context, cli *clientv3.Client) error
	switch args[0] {
	case "put":
		if fs.NArg() > 0 {
			return bad("put takes no arguments besides flags, got %q", fs.Arg(0))
		}
		p := conf.Peer{ID: *id, Endpoint: *endpoint, PersistentKeepalive: *keepalive}
		k, err := handshake.ParsePublicKey(*pub)
		if err != nil {
			return bad("-public-key: %v; get it on the peer with: sudo stunnel pubkey PEER.key", err)
		}
		p.PublicKey = k
		for _, s := range strings.Split(*ips, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			pfx, err := conf.ParseAllowedIP(s)
			if err != nil {
				return bad("-allowed-ips: %v", err)
			}
			p.AllowedIPs = append(p.AllowedIPs, pfx)
		}
		if err := conf.ValidatePeer(p); err != nil {
			return bad("%v", err)
		}
		if err := directory.CheckRecordID(p.ID); err != nil {
			return bad("%v", err)
		}
		op = func(ctx context.Context, cli *clientv3.Client) error { return directory.Put(ctx, cli, dc.Prefix, p) }
	case "delete":
		if fs.NArg() != 1 {
			return bad("delete takes one peer ID\n%s", directoryUsage)
		}
		target := fs.Arg(0)
		if err := directory.CheckRecordID(target); err != nil {
			return bad("%v", err)
		}
		op = func(ctx context.Context, cli *clientv3.Client) error {
			return directory.Delete(ctx, cli, dc.Prefix, target)
		}
	case "list":
		if fs.NArg() > 0 {
			return bad("list takes no arguments besides flags")
		}
		op = func(ctx context.Context, cli *clientv3.Client) error {
			entries, rev, err := directory.List(ctx, cli, dc.Prefix)
			if err != nil {
				return err
			}
			printEntries(stdout, entries, rev, *asJSON)
			return nil
		}
	default:
		return bad("unknown subcommand %q\n%s", args[0], directoryUsage)
	}

	tlsCfg, err := directory.TLSConfig(dc)
	if err != nil {
		return bad("%v", err)
	}
	cli, err := directory.Dial(dc.Endpoints, tlsCfg)
	if err != nil {
		fmt.Fprintf(stderr, "stunnel directory: cannot reach etcd at %v: %v\n", dc.Endpoints, err)
		return exitRuntime
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := op(ctx, cli); err != nil {
		if errors.Is(err, directory.ErrNoRecord) {
			// etcd answered: its health and our rights are not the matter.
			fmt.Fprintf(stderr, "stunnel directory delete: no record for peer %s under %s; `stunnel directory list -c %s` shows the records\n", quoteArg(fs.Arg(0)), dc.Prefix, *path)
			return exitRuntime
		}
		may := "write"
		if args[0] == "list" {
			may = "read"
		}
		fmt.Fprintf(stderr, "stunnel directory %s: %v (etcd %v); check that etcd runs and that this host may %s %s\n", args[0], err, dc.Endpoints, may, dc.Prefix)
		return exitRuntime
	}
	return exitOK
}

func printEntries(w io.Writer, entries []directory.Entry, rev int64, asJSON bool) {
	if asJSON {
		type rec struct {
			ID                  string   `json:"id"`
			PublicKey           string   `json:"public_key,omitempty"`
			AllowedIPs          []string `json:"allowed_ips,omitempty"`
			Endpoint            string   `json:"endpoint,omitempty"`
			PersistentKeepalive string   `json:"persistent_keepalive,omitempty"`
			Error               string   `json:"error,omitempty"`
		}
		out := struct {
			Revision int64 `json:"revision"`
			Records  []rec `json:"records"`
		}{Revision: rev, Records: []rec{}}
		for _, e := range entries {
			r := rec{ID: e.ID}
			if e.Err != nil {
				r.Error = e.Err.Error()
			} else {
				r.PublicKey, r.Endpoint = e.Peer.PublicKey.String(), e.Peer.Endpoint
				r.AllowedIPs = prefixStrings(e.Peer.AllowedIPs)
				if e.Peer.PersistentKeepalive > 0 {
					r.PersistentKeepalive = e.Peer.PersistentKeepalive.String()
				}
			}
			out.Records = append(out.Records, r)
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "revision %d, %d records\n", rev, len(entries))
	for _, e := range entries {
		if e.Err != nil {
			fmt.Fprintf(w, "%s\tMALFORMED (skipped by every host): %v\n", printable(e.ID), e.Err)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s", e.ID, e.Peer.PublicKey, strings.Join(prefixStrings(e.Peer.AllowedIPs), ","))
		if e.Peer.Endpoint != "" {
			fmt.Fprintf(w, "\tendpoint=%s", e.Peer.Endpoint)
		}
		if e.Peer.PersistentKeepalive > 0 {
			fmt.Fprintf(w, "\tkeepalive=%s", e.Peer.PersistentKeepalive)
		}
		fmt.Fprintln(w)
	}
}

// printable is a name from etcd as list and show print it: a record's ID
// is the last part of an etcd key, the rotator's the value of its election
// key, both chosen by whoever may write there; one holding a newline, tab
// or escape would forge lines or drive the terminal, so such a name is
// quoted. A valid peer ID or host name has no such characters.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}
