package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"stunnel/internal/netns"
)

// The parts of the demo that teach the workflow: the configs it wrote, what
// `stunnel show` says about the running tunnel, and what its throughput
// figure means next to README's.

// printConfigs shows the files the demo wrote, as a user would write them.
func (d *demo) printConfigs() error {
	for _, h := range []*demoHost{d.a, d.b} {
		text, err := os.ReadFile(h.confPath)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "%s (checked like `stunnel check -c %s`; the key file next to it is mode 0600):\n%s\n",
			h.confPath, h.confPath, indent(string(text)))
	}
	return nil
}

// show prints `stunnel show` of host-a, as an operator would run it.
func (d *demo) show(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append(append([]string{}, demoSelfArgs...), "show", "-c", d.a.confPath)
	cmd := netns.Exec(d.a.ns, self, args...)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+d.dir)
	out, err := runCtx(ctx, cmd)
	fmt.Fprintf(d.out, "\nstunnel show -c %s (on %s):\n%s\n", d.a.confPath, d.a.id, indent(out))
	if err != nil {
		return fmt.Errorf("stunnel show: %v", err)
	}
	return nil
}

// explainThroughput says why the demo's figure is below README's headline.
func (d *demo) explainThroughput() {
	fmt.Fprintln(d.out, strings.Join([]string{
		"",
		"About the throughput figure: it is one 3-second TCP stream between two namespaces on this",
		"machine, where both daemons, the sender and the receiver share its cores; the bare veth line",
		"is this machine's ceiling. README's headline figure (measured on a 2-core VM) comes from",
		"`sudo make bench`: 10-second iperf3 runs, the median of 3 rounds, next to wireguard-go and Nebula on",
		"the same setup (docs/PERFORMANCE.md). Compare the tunnel with the bare veth, not with README.",
		"",
		"On real hosts: write /etc/stunnel/NAME.toml like the files above, then",
		"  sudo stunnel check -c /etc/stunnel/NAME.toml && sudo systemctl enable --now stunnel@NAME",
		"  sudo stunnel show",
	}, "\n"))
}

// logTail returns the last lines of a daemon's log, for error messages.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "\n--- last lines of " + path + " ---\n  " + strings.Join(lines, "\n  ")
}

// indent indents every line of s by two spaces.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
