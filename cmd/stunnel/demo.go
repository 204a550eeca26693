package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/netns"
)

// Demo timing. Waits are for conditions; these only bound them.
const (
	demoReadyWithin = 20 * time.Second // until the tunnel passes a ping
	demoProbeWait   = 500 * time.Millisecond
	demoTransfer    = 3 * time.Second // each throughput measurement
	demoStopWithin  = 5 * time.Second // SIGTERM to exit, before SIGKILL
	demoPort        = 51820
)

// Replaced by tests: demoEUID to check the not-root path, demoSelfArgs so
// the test binary, standing in for stunnel, runs main for `up`.
var (
	demoEUID     = os.Geteuid
	demoSelfArgs []string
)

// demoHost is one namespaced test host and its daemon.
type demoHost struct {
	id, ns, veth, tun string
	underlay          netip.Prefix
	overlay           []netip.Prefix // IPv4 first
	key               handshake.PrivateKey
	confPath, logPath string
	cmd               *exec.Cmd
	exited            chan struct{} // closed when the daemon has exited; then waitErr is set
	waitErr           error
}

// demo holds what the demo made, so cleanup can undo exactly that.
type demo struct {
	out      io.Writer
	dir      string
	a, b     *demoHost
	cleanups []func() error // run last-first
}

func cmdDemo(args []string) int { return runDemo(args, os.Stdout, os.Stderr) }

// runDemo builds two hosts in network namespaces, brings the tunnel up between
// them, shows ping and throughput through it and removes everything again,
// also on error and on Ctrl-C.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stunnel demo   (as root: a tunnel between two network namespaces)")
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if demoEUID() != 0 {
		fmt.Fprintln(stderr, "stunnel demo: needs root to make network namespaces and TUN devices; run: sudo stunnel demo")
		return exitRuntime
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fmt.Fprintln(stderr, "stunnel demo: needs the ip command (iproute2) to make network namespaces; install iproute2")
		return exitRuntime
	}
	// Until cleanup is done, SIGINT/SIGTERM only cancel ctx: a second Ctrl-C
	// cannot cut the cleanup short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &demo{out: stdout}
	err := d.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(stderr, "stunnel demo: %v\n", err)
	}
	if cerr := d.cleanup(); cerr != nil {
		fmt.Fprintf(stderr, "stunnel demo: cleaning up: %v\n", strings.ReplaceAll(cerr.Error(), "\n", "; "))
		return exitRuntime
	}
	fmt.Fprintln(stdout, "cleaned up: daemons stopped, namespaces and temporary files removed")
	if err != nil {
		return exitRuntime
	}
	return exitOK
}

func (d *demo) cleanup() error {
	var errs []error
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, d.cleanups[i]())
	}
	d.cleanups = nil
	return errors.Join(errs...)
}

func (d *demo) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "stunnel-demo-")
	if err != nil {
		return fmt.Errorf("making a temporary directory: %w", err)
	}
	d.dir = dir
	d.cleanups = append(d.cleanups, func() error { return os.RemoveAll(dir) })

	pid := os.Getpid() // in every name, so parallel runs never clash
	d.a = &demoHost{id: "host-a", ns: fmt.Sprintf("stdemo-a-%d", pid), veth: fmt.Sprintf("vda%d", pid), tun: fmt.Sprintf("sta%d", pid),
		underlay: netip.MustParsePrefix("198.18.0.1/24"),
		overlay:  []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("fd00:77::1/64")}}
	d.b = &demoHost{id: "host-b", ns: fmt.Sprintf("stdemo-b-%d", pid), veth: fmt.Sprintf("vdb%d", pid), tun: fmt.Sprintf("stb%d", pid),
		underlay: netip.MustParsePrefix("198.18.0.2/24"),
		overlay:  []netip.Prefix{netip.MustParsePrefix("198.19.0.2/24"), netip.MustParsePrefix("fd00:77::2/64")}}
	if err := d.writeConfigs(); err != nil {
		return err
	}
	if err := d.printConfigs(); err != nil {
		return err
	}

	fmt.Fprintf(d.out, "two test hosts in network namespaces, joined by a veth pair (files in %s):\n", dir)
	for _, h := range []*demoHost{d.a, d.b} {
		fmt.Fprintf(d.out, "  %s  netns %-18s underlay %s  overlay %s %s on %s\n", h.id, h.ns, h.underlay, h.overlay[0], h.overlay[1], h.tun)
	}
	for _, h := range []*demoHost{d.a, d.b} {
		// A namespace with our pid in its name can only be left over from a
		// demo that was killed outright, whose pid we now reuse.
		if err := netns.Delete(h.ns); err != nil {
			return err
		}
		if err := netns.Add(h.ns); err != nil {
			return err
		}
		ns := h.ns
		d.cleanups = append(d.cleanups, func() error { return netns.Delete(ns) })
	}
	if err := netns.Veth(d.a.ns, d.a.veth, d.a.underlay, d.b.ns, d.b.veth, d.b.underlay); err != nil {
		return err
	}
	for _, h := range []*demoHost{d.a, d.b} {
		if err := d.start(h); err != nil {
			return err
		}
	}

	start := time.Now()
	if err := d.waitTunnel(ctx); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "tunnel up: first ping answered %.1fs after start\n\n", time.Since(start).Seconds())

	err = d.ping(ctx)
	if err == nil {
		err = d.throughput(ctx)
	}
	if err == nil {
		err = d.show(ctx)
		d.explainThroughput()
	}
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w%s%s", err, logTail(d.a.logPath), logTail(d.b.logPath))
	}
	return err
}

// writeConfigs makes keys and the two configs, and validates them with the
// same code `stunnel up` uses, so a mistake here is reported as such.
func (d *demo) writeConfigs() error {
	for _, h := range []*demoHost{d.a, d.b} {
		k, err := handshake.GeneratePrivateKey(nil)
		if err != nil {
			return err
		}
		h.key = k
		h.confPath = filepath.Join(d.dir, h.id+".toml")
		h.logPath = filepath.Join(d.dir, h.id+".log")
		if err := os.WriteFile(filepath.Join(d.dir, h.id+".key"), []byte(k.Base64()+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing %s's key: %w", h.id, err)
		}
	}
	for _, pair := range [][2]*demoHost{{d.a, d.b}, {d.b, d.a}} {
		h, peer := pair[0], pair[1]
		text := fmt.Sprintf(`# written by stunnel demo
[interface]
name = %q
peer_id = %q
private_key_file = "%s.key"
state_file = "%s.state"   # demo only: on a real host leave it out (/var/lib/stunnel/NAME.state, which the unit can write)
listen_port = %d
address = [%q, %q]

[[peer]]
id = %q
public_key = %q
endpoint = "%s:%d"
allowed_ips = ["%s/32", "%s/128"]
`, h.tun, h.id, h.id, h.id, demoPort, h.overlay[0], h.overlay[1],
			peer.id, peer.key.PublicKey(), peer.underlay.Addr(), demoPort, peer.overlay[0].Addr(), peer.overlay[1].Addr())
		if err := os.WriteFile(h.confPath, []byte(text), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", h.confPath, err)
		}
		if _, err := conf.Load(h.confPath); err != nil {
			return fmt.Errorf("the demo wrote an invalid config (a bug): %v", err)
		}
	}
	return nil
}

// start runs `stunnel up` inside h's namespace, logging to h.logPath.
func (d *demo) start(h *demoHost) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding our own binary: %w", err)
	}
	logf, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append(append([]string{}, demoSelfArgs...), "up", "-c", h.confPath)
	cmd := netns.Exec(h.ns, self, args...)
	// Control sockets go to the temp dir, not the host's /run/stunnel.
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+d.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: Ctrl-C reaches only us, and we stop the daemons in
	// order. Pdeathsig: if we are killed outright, the daemons still stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting stunnel up in %s: %w", h.ns, err)
	}
	h.cmd, h.exited = cmd, make(chan struct{})
	go func() { h.waitErr = cmd.Wait(); close(h.exited) }()
	d.cleanups = append(d.cleanups, func() error { return stopDaemon(h) })
	return nil
}

// stopDaemon sends SIGTERM and waits, then SIGKILL. A daemon that had to be
// killed, or that exited with a failure, is an error.
func stopDaemon(h *demoHost) error {
	select {
	case <-h.exited:
		if h.waitErr != nil {
			return fmt.Errorf("stunnel up in %s had already exited: %v", h.ns, h.waitErr)
		}
		return fmt.Errorf("stunnel up in %s had already exited, unasked", h.ns)
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(demoStopWithin)
	defer t.Stop()
	select {
	case <-h.exited:
		if h.waitErr != nil && !diedOf(h.waitErr, syscall.SIGTERM) {
			return fmt.Errorf("stunnel up in %s stopped with %v", h.ns, h.waitErr)
		}
		// Dying of our SIGTERM is a clean stop too (systemd counts it
		// so): it came before `up` caught signals (still in `ip netns
		// exec`, in the config check or the re-exec that narrows its
		// privileges), and `up` catches them before it makes anything.
		// A Ctrl-C in the demo's first second lands there.
		return nil
	case <-t.C:
		_ = h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("stunnel up in %s did not stop within %v of SIGTERM; killed it", h.ns, demoStopWithin)
	}
}

// diedOf says whether a process's wait error is its death by signal sig.
func diedOf(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// waitTunnel probes with one ping at a time until host-b answers through the
// tunnel, a daemon dies, or the deadline passes.
func (d *demo) waitTunnel(ctx context.Context) error {
	deadline := time.Now().Add(demoReadyWithin)
	dst := d.b.overlay[0].Addr()
	var lastErr error
	for seq := 1; ; seq++ {
		for _, h := range []*demoHost{d.a, d.b} {
			select {
			case <-h.exited:
				return fmt.Errorf("stunnel up in %s exited (%v)%s", h.ns, h.waitErr, logTail(h.logPath))
			default:
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, lastErr = icmpEcho(d.a.ns, dst, seq, demoProbeWait); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the tunnel passed no ping from %s to %s within %v (last: %v)%s%s",
				d.a.id, dst, demoReadyWithin, lastErr, logTail(d.a.logPath), logTail(d.b.logPath))
		}
	}
}

// ping shows five pings over IPv4 and one over IPv6 through the tunnel, with
// the ping binary when there is one.
func (d *demo) ping(ctx context.Context) error {
	for _, t := range []struct {
		dst   netip.Addr
		count int
	}{{d.b.overlay[0].Addr(), 5}, {d.b.overlay[1].Addr(), 1}} {
		fmt.Fprintf(d.out, "ping %s from %s, through the tunnel:\n", t.dst, d.a.id)
		if _, err := exec.LookPath("ping"); err == nil {
			out, err := runCtx(ctx, netns.Exec(d.a.ns, "ping", "-n", "-c", fmt.Sprint(t.count), "-i", "0.2", "-W", "2", t.dst.String()))
			fmt.Fprintln(d.out, indent(out)+"\n")
			if err != nil {
				return fmt.Errorf("ping %s through the tunnel failed: %v", t.dst, err)
			}
			continue
		}
		for seq := 1; seq <= t.count; seq++ {
			rtt, err := icmpEcho(d.a.ns, t.dst, seq, 2*time.Second)
			if err != nil {
				return fmt.Errorf("ping %s through the tunnel failed: %v", t.dst, err)
			}
			fmt.Fprintf(d.out, "  reply from %s: seq=%d time=%.3f ms\n", t.dst, seq, float64(rtt.Microseconds())/1000)
		}
		fmt.Fprintln(d.out)
	}
	return nil
}

// runCtx runs cmd and returns its combined output; it kills cmd when ctx ends.
func runCtx(ctx context.Context, cmd *exec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.String(), ctx.Err()
	}
}

// icmpEcho sends one echo request from namespace ns and waits for its reply.
func icmpEcho(ns string, dst netip.Addr, seq int, timeout time.Duration) (time.Duration, error) {
	network, listen, proto := "ip4:icmp", "0.0.0.0", 1
	var typ, replyTyp icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, listen, proto = "ip6:ipv6-icmp", "::", 58
		typ, replyTyp = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := netns.Do(ns, func() (err error) { c, err = icmp.ListenPacket(network, listen); return err }); err != nil {
		return 0, err
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("stunnel demo")}}).Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.SetDeadline(start.Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return 0, fmt.Errorf("no echo reply from %s within %v", dst, timeout)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyTyp {
			continue // a raw socket sees all ICMP in the namespace
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			return time.Since(start), nil
		}
	}
}

// throughput measures one TCP stream through the tunnel, and over the bare
// veth for comparison, each for demoTransfer.
func (d *demo) throughput(ctx context.Context) error {
	fmt.Fprintf(d.out, "throughput, one TCP stream for %v:\n", demoTransfer)
	for _, t := range []struct {
		what     string
		src, dst netip.Addr
	}{
		{"through the tunnel", d.a.overlay[0].Addr(), d.b.overlay[0].Addr()},
		{"bare veth, no tunnel", d.a.underlay.Addr(), d.b.underlay.Addr()},
	} {
		n, elapsed, err := tcpTransfer(ctx, d.a.ns, d.b.ns, t.dst, demoTransfer)
		if err != nil {
			return fmt.Errorf("TCP transfer %s (%s -> %s): %v", t.what, t.src, t.dst, err)
		}
		fmt.Fprintf(d.out, "  %-21s %-11s -> %-11s %8.1f Mbit/s  (%d MB in %.1fs)\n",
			t.what, t.src, t.dst, float64(n)*8/elapsed.Seconds()/1e6, n>>20, elapsed.Seconds())
	}
	return nil
}

// tcpTransfer sends for dur from namespace fromNS to a listener in toNS and
// returns what the receiver got, timed from its first byte to EOF.
func tcpTransfer(ctx context.Context, fromNS, toNS string, dst netip.Addr, dur time.Duration) (int64, time.Duration, error) {
	var ln net.Listener
	if err := netns.Do(toNS, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		return 0, 0, err
	}
	defer ln.Close()

	type result struct {
		n       int64
		elapsed time.Duration
		err     error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(dur + 30*time.Second))
		buf := make([]byte, 256<<10)
		n, err := c.Read(buf)
		start := time.Now()
		if err != nil {
			got <- result{err: err}
			return
		}
		rest, err := io.CopyBuffer(io.Discard, c, buf)
		got <- result{int64(n) + rest, time.Since(start), err}
	}()

	var c net.Conn
	if err := netns.Do(fromNS, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		return 0, 0, err
	}
	stopSend := context.AfterFunc(ctx, func() { c.Close() })
	defer stopSend()
	_ = c.SetWriteDeadline(time.Now().Add(dur))
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				c.Close()
				return 0, 0, err
			}
			break
		}
	}
	c.Close()
	select {
	case r := <-got:
		return r.n, r.elapsed, r.err
	case <-ctx.Done():
		ln.Close()
		return 0, 0, ctx.Err()
	}
}
