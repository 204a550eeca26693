package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"stunnel/tunnel"
	"stunnel/tunnel/control"
)

func cmdShow(args []string) int { return runShow(args, os.Stdout, os.Stderr, time.Now) }

// runShow prints the status of the tunnel named by -c FILE, or of every
// tunnel with a control socket, like `wg show`; --json prints a JSON array of
// tunnel.Status instead. now is injected so "12 seconds ago" is testable.
// Bad usage exits 1 like no tunnel: PRODUCT.md gives show 0 and 1 only.
func runShow(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("c", "", "config `FILE` whose [interface] name to show")
	ifname := fs.String("i", "", "interface `NAME` to show")
	asJSON := fs.Bool("json", false, "print a JSON array of statuses")
	asMetrics := fs.Bool("metrics", false, "print the Prometheus metrics of the tunnel")
	const usage = "usage: stunnel show [-c FILE | -i NAME] [--json | --metrics]"
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "stunnel show: %v; %s\n", err, usage)
		return exitRuntime
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stunnel show: unexpected argument %s; %s\n", quoteArg(fs.Arg(0)), usage)
		return exitRuntime
	}
	if *asJSON && *asMetrics {
		// Metrics are Prometheus text only; quietly dropping one of the
		// two would hand a script a format it did not ask for.
		fmt.Fprintf(stderr, "stunnel show: --json and --metrics do not go together; %s\n", usage)
		return exitRuntime
	}

	var sockets []string
	sock, picked, err := socketFor("show", *path, *ifname)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitRuntime
	}
	if picked {
		sockets = []string{sock}
	} else {
		var err error
		if sockets, err = control.Sockets(); err != nil {
			fmt.Fprintf(stderr, "stunnel show: %v\n", err)
			return exitRuntime
		}
		if len(sockets) == 0 {
			fmt.Fprintf(stderr, "stunnel show: no tunnel running (no control socket in %s)\n", control.Dir())
			return exitRuntime
		}
	}

	if *asMetrics {
		return showMetrics(sockets, stdout, stderr)
	}

	var statuses []tunnel.Status
	failed := false
	for _, sock := range sockets {
		st, err := queryStatus(sock)
		if err != nil {
			// Without -c, a leftover socket of a daemon that died is
			// not worth a complaint when others answer; say it only if
			// nothing answers at all.
			if !picked && errors.Is(err, control.ErrNotRunning) && len(sockets) > 1 {
				continue
			}
			fmt.Fprintf(stderr, "stunnel show: %v\n", err)
			failed = true
			continue
		}
		statuses = append(statuses, st)
	}
	if len(statuses) == 0 {
		if !failed { // only stale sockets were found
			fmt.Fprintf(stderr, "stunnel show: no tunnel running (no live control socket in %s)\n", control.Dir())
		}
		return exitRuntime
	}
	sort.SliceStable(statuses, func(i, j int) bool { return statuses[i].Name < statuses[j].Name })

	if *asJSON {
		b, err := json.MarshalIndent(statuses, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "stunnel show: encoding JSON: %v\n", err)
			return exitRuntime
		}
		stdout.Write(append(b, '\n'))
	} else {
		for i := range statuses {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			writeStatus(stdout, &statuses[i], now())
		}
	}
	if failed {
		return exitRuntime
	}
	return exitOK
}

// showMetrics prints the metrics of one tunnel, as /metrics serves them.
func showMetrics(sockets []string, stdout, stderr io.Writer) int {
	if len(sockets) != 1 {
		fmt.Fprintf(stderr, "stunnel show: --metrics: %d tunnels run here; pick one with -c FILE or -i NAME\n", len(sockets))
		return exitRuntime
	}
	reply, err := control.Query(sockets[0], "metrics", "")
	if err != nil {
		fmt.Fprintf(stderr, "stunnel show: %v\n", err)
		return exitRuntime
	}
	stdout.Write(reply)
	return exitOK
}

func queryStatus(sock string) (tunnel.Status, error) {
	var st tunnel.Status
	reply, err := control.Query(sock, "status", "")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(reply, &st); err != nil {
		return st, fmt.Errorf("control socket %s: malformed status reply: %v", sock, err)
	}
	return st, nil
}

// writeStatus prints one tunnel the way `wg show` does: the interface, then
// a block per peer, then what cannot be charged to a peer.
func writeStatus(w io.Writer, st *tunnel.Status, now time.Time) {
	fmt.Fprintf(w, "interface: %s\n", st.Name)
	fmt.Fprintf(w, "  peer id: %s\n", st.PeerID)
	fmt.Fprintf(w, "  public key: %s\n", st.PublicKey)
	fmt.Fprintf(w, "  listening port: %d\n", st.ListenPort)
	if k := st.StaticKey; k != nil {
		writeStaticKey(w, k)
	}
	if d := st.Directory; d != nil {
		writeDirectory(w, d, now)
	}
	if r := st.TicketRing; r != nil {
		writeTicketRing(w, r, now)
	}
	for i := range st.Peers {
		p := &st.Peers[i]
		fmt.Fprintf(w, "\npeer: %s\n", p.ID)
		fmt.Fprintf(w, "  public key: %s\n", p.PublicKey)
		if p.Endpoint != "" {
			fmt.Fprintf(w, "  endpoint: %s\n", p.Endpoint)
		} else {
			fmt.Fprintf(w, "  endpoint: (none yet)\n")
		}
		if len(p.StandbyEndpoints) > 0 || p.Failovers > 0 {
			fmt.Fprintf(w, "  standby endpoints: %s\n", strings.Join(p.StandbyEndpoints, ", "))
			fmt.Fprintf(w, "  failovers: %d\n", p.Failovers)
		}
		allowed := "(none)"
		if len(p.AllowedIPs) > 0 {
			allowed = strings.Join(p.AllowedIPs, ", ")
		}
		fmt.Fprintf(w, "  allowed ips: %s\n", allowed)
		if p.LastHandshake != nil && !p.LastHandshake.IsZero() {
			fmt.Fprintf(w, "  latest handshake: %s\n", ago(now.Sub(*p.LastHandshake)))
		} else {
			fmt.Fprintf(w, "  latest handshake: never\n")
		}
		fmt.Fprintf(w, "  transfer: %s received, %s sent\n", bytesHuman(p.RxBytes), bytesHuman(p.TxBytes))
		if p.SessionID != "" {
			id := p.SessionID
			if len(id) > 8 {
				id = id[:8]
			}
			fmt.Fprintf(w, "  session: %s (%s)\n", id, p.Cipher)
		}
		if d := dropsLine(p.Drops); d != "" {
			fmt.Fprintf(w, "  drops: %s\n", d)
		}
		if p.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", p.LastError)
		}
	}
	if d := dropsLine(st.Drops); d != "" {
		fmt.Fprintf(w, "\ninterface drops: %s\n", d)
	}
	if len(st.Refusals) > 0 {
		fmt.Fprintf(w, "\nrefused handshakes:\n")
		for _, r := range st.Refusals {
			from := r.Endpoint
			if from == "" {
				from = "?"
			}
			fmt.Fprintf(w, "  %q from %s: %s (%s, last %s)\n", r.PeerID, from, r.Reason, times(r.Count), ago(now.Sub(r.Last)))
		}
	}
}

// dropsLine lists the non-zero drop reasons, sorted by name: "replayed 2, no_key 1".
func dropsLine(m map[string]uint64) string {
	var keys []string
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func times(n uint64) string {
	if n == 1 {
		return "1 time"
	}
	return fmt.Sprintf("%d times", n)
}

// ago renders a duration as `wg show` does: "1 hour, 2 minutes, 5 seconds ago".
func ago(d time.Duration) string {
	if d < 0 {
		return "in the future (clock skew?)"
	}
	secs := int64(d / time.Second)
	if secs == 0 {
		return "just now"
	}
	var parts []string
	for _, u := range []struct {
		n    int64
		name string
	}{{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}} {
		if v := secs / u.n; v > 0 {
			s := fmt.Sprintf("%d %s", v, u.name)
			if v != 1 {
				s += "s"
			}
			parts = append(parts, s)
			secs %= u.n
		}
	}
	return strings.Join(parts, ", ") + " ago"
}

// bytesHuman renders a byte count in binary units: "512 B", "1.50 KiB".
func bytesHuman(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= 1024
		if v < 1024 || u == "PiB" {
			return fmt.Sprintf("%.2f %s", v, u)
		}
	}
	return "" // unreachable: the loop returns at PiB
}

// writeStaticKey says that the key is in a token, where it came from, and
// whether the token answers (pkcs11key: origin.go, worker.go).
func writeStaticKey(w io.Writer, k *tunnel.StaticKeyStatus) {
	origin := map[string]string{
		"generated":        "generated in the token",
		"imported":         "imported into the token: a copy may exist outside it",
		"extractable_once": "extractable once: a copy may exist outside the token",
		"unknown":          "origin unknown (the token does not say)",
	}[k.Origin]
	if origin == "" {
		origin = k.Origin
	}
	fmt.Fprintf(w, "  private key: in a PKCS#11 token, %s\n", origin)
	if k.Hung {
		fmt.Fprintf(w, "  token: not answering; handshakes fail until it does\n")
	}
	if k.Unanswered > 0 {
		fmt.Fprintf(w, "  token operations unanswered: %d\n", k.Unanswered)
	}
}
