package netnstests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"stunnel/internal/netns"
)

const (
	devName    = "st0" // TUN name inside every test namespace
	listenPort = 51820 // every host listens here; namespaces keep them apart
	readyWait  = 10 * time.Second
	stopWait   = 10 * time.Second
)

// peerConf is one [[peer]] block.
type peerConf struct {
	ID         string
	PublicKey  string
	Endpoint   string // "" for a roaming peer
	AllowedIPs []string
	Keepalive  string   // persistent_keepalive, "" for none
	Extra      []string // raw TOML lines for the block, e.g. `failover_after = "2s"`
}

// node is one stunnel daemon in a namespace, with its config and log.
type node struct {
	l        *lab
	ns       string
	ID       string
	Key      keyPair
	Underlay string   // underlay address without length, for peers' endpoints
	Address  []string // overlay addresses with length
	Session  []string // raw TOML lines for [session], e.g. `rekey_after = "2s"`
	// NoStateFile turns the state file off: every restart handshakes anew.
	NoStateFile bool
	MTU         string // the mtu line's value: "" for 1420, "none" for no mtu key
	Peers       []peerConf
	KeyTOML     string // raw [interface] key lines instead of private_key_file (a pkcs11: key)
	Extra       string // raw TOML tables appended to the config, e.g. "[control]\n..."

	dir, cfgPath, runDir, logPath string
	// brokenConfig is set while the config file is deliberately invalid:
	// show then finds the tunnel through the run dir instead of -c.
	brokenConfig bool
	cmd          *exec.Cmd
	done         chan struct{} // closed when cmd has exited
	exitCode     int           // valid once done is closed
}

// newNode prepares (does not start) a daemon with a fresh key.
func (l *lab) newNode(ns, id, underlay string, address ...string) *node {
	l.t.Helper()
	key := newKeyPair(l.t)
	dir := filepath.Join(l.dir, id)
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		l.t.Fatal(err)
	}
	return &node{l: l, ns: ns, ID: id, Key: key, Underlay: addrOf(underlay), Address: address,
		dir: dir, cfgPath: filepath.Join(dir, id+".toml"), runDir: filepath.Join(dir, "run"),
		logPath: filepath.Join(dir, id+".log")}
}

func (n *node) pub() string { return n.Key.public }

func (n *node) endpoint() string { return fmt.Sprintf("%s:%d", n.Underlay, listenPort) }

// addPeer lists other as a peer of n, with its endpoint if withEndpoint.
func (n *node) addPeer(other *node, withEndpoint bool, allowed ...string) {
	p := peerConf{ID: other.ID, PublicKey: other.pub(), AllowedIPs: allowed}
	if withEndpoint {
		p.Endpoint = other.endpoint()
	}
	n.Peers = append(n.Peers, p)
}

// config renders the TOML of docs/CONFIGURATION.md.
func (n *node) config() string {
	var b strings.Builder
	key := fmt.Sprintf("private_key_file = %q", filepath.Join(n.dir, n.ID+".key"))
	if n.KeyTOML != "" {
		key = n.KeyTOML
	}
	fmt.Fprintf(&b, "[interface]\nname = %q\npeer_id = %q\n%s\nstate_file = %q\nlisten_port = %d\n",
		devName, n.ID, key, n.statePath(), listenPort)
	fmt.Fprintf(&b, "address = %s\n", tomlList(n.Address))
	switch n.MTU {
	case "":
		b.WriteString("mtu = 1420\n")
	case "none":
	default:
		b.WriteString("mtu = " + n.MTU + "\n")
	}
	if len(n.Session) > 0 {
		b.WriteString("\n[session]\n" + strings.Join(n.Session, "\n") + "\n")
	}
	for _, p := range n.Peers {
		fmt.Fprintf(&b, "\n[[peer]]\nid = %q\npublic_key = %q\nallowed_ips = %s\n", p.ID, p.PublicKey, tomlList(p.AllowedIPs))
		if p.Endpoint != "" {
			fmt.Fprintf(&b, "endpoint = %q\n", p.Endpoint)
		}
		if p.Keepalive != "" {
			fmt.Fprintf(&b, "persistent_keepalive = %q\n", p.Keepalive)
		}
		for _, line := range p.Extra {
			b.WriteString(line + "\n")
		}
	}
	if n.Extra != "" {
		b.WriteString("\n" + n.Extra + "\n")
	}
	return b.String()
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// writeConfig writes the key (0600, as the daemon demands) and the config.
func (n *node) writeConfig() {
	n.l.t.Helper()
	if err := os.WriteFile(filepath.Join(n.dir, n.ID+".key"), []byte(n.Key.private+"\n"), 0o600); err != nil {
		n.l.t.Fatal(err)
	}
	n.writeRaw(n.config())
}

// writeRaw replaces the config file with any text (for broken configs).
func (n *node) writeRaw(text string) {
	n.l.t.Helper()
	if err := os.WriteFile(n.cfgPath, []byte(text), 0o600); err != nil {
		n.l.t.Fatal(err)
	}
	n.brokenConfig = text != n.config()
}

// start writes the config, runs `stunnel up` inside the namespace and waits
// until it is ready: `show --json` answers and the device exists.
func (n *node) start() {
	n.l.t.Helper()
	n.writeConfig()
	n.launch(netns.Exec(n.ns, stunnelBin, "up", "-c", n.cfgPath), "show answers, device exists", nil)
}

// launch starts cmd, a `stunnel up` of this node (its environment, if set,
// is kept), and waits until it is ready: show answers, the device exists
// and alsoReady (if not nil) holds. Cleanup kills it and checks its log.
func (n *node) launch(cmd *exec.Cmd, readyWhat string, alsoReady func() bool) {
	t := n.l.t
	t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if n.done != nil {
		// A previous run of this node: its waiter must have written its
		// fields before we replace them (and it had been stopped or killed).
		<-n.done
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "STUNNEL_RUN_DIR="+n.runDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so cleanup can kill anything it spawned; killed with
	// the test binary if that dies without running cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close() // the child has its copies
	}
	if err != nil {
		logf.Close()
		t.Fatalf("starting stunnel up in %s: %v", n.ns, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.exitCode = exitCode(err)
		close(n.done)
	}()
	done := n.done
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log := n.log()
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:", "goroutine "} {
			if strings.Contains(log, bad) {
				t.Errorf("the log of %s contains %q", n.ID, bad)
				break
			}
		}
		if t.Failed() {
			t.Logf("--- log of %s (%s) ---\n%s", n.ID, n.ns, log)
		}
	})
	waitFor(t, readyWait, n.ID+" to be ready ("+readyWhat+")", func() bool {
		if n.exited() {
			t.Fatalf("stunnel up of %s exited with %d before it was ready; log:\n%s", n.ID, n.exitCode, n.log())
		}
		_, err := n.tryShow()
		return err == nil && n.hasDevice() && (alsoReady == nil || alsoReady())
	})
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		return -1
	}
}

func (n *node) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func (n *node) signal(sig syscall.Signal) {
	n.l.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.l.t.Fatalf("signalling %s: %v", n.ID, err)
	}
}

// stop sends SIGTERM and returns the exit code once the process is gone.
func (n *node) stop() int {
	n.l.t.Helper()
	n.signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return n.exitCode
	case <-time.After(stopWait):
		n.l.t.Fatalf("%s did not exit within %s of SIGTERM", n.ID, stopWait)
		return -1
	}
}

func (n *node) hasDevice() bool {
	_, err := netns.Run(n.ns, "ip", "link", "show", "dev", devName)
	return err == nil
}

func (n *node) log() string {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

// tryShow runs `stunnel show --json -c FILE` and returns our interface's status.
func (n *node) tryShow() (status, error) {
	args := []string{"show", "--json", "-c", n.cfgPath}
	if n.brokenConfig {
		args = args[:2]
	}
	cmd := netns.Exec(n.ns, stunnelBin, args...)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+n.runDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return status{}, fmt.Errorf("show of %s: %v: %s", n.ID, err, strings.TrimSpace(stderr.String()))
	}
	var all []status
	if err := json.Unmarshal(stdout.Bytes(), &all); err != nil {
		return status{}, fmt.Errorf("show of %s: bad JSON: %v: %q", n.ID, err, stdout.String())
	}
	for _, s := range all {
		if s.Name == devName {
			return s, nil
		}
	}
	return status{}, fmt.Errorf("show of %s: no interface %s in %q", n.ID, devName, stdout.String())
}

func (n *node) show() status {
	n.l.t.Helper()
	s, err := n.tryShow()
	if err != nil {
		n.l.t.Fatal(err)
	}
	return s
}

// findPeer returns the status of peer id; ok is false if show does not list it.
func findPeer(s status, id string) (peerStatus, bool) {
	for _, p := range s.Peers {
		if p.ID == id {
			return p, true
		}
	}
	return peerStatus{}, false
}

// peer returns n's view of peer id, failing the test if show does not list it.
func (n *node) peer(id string) peerStatus {
	n.l.t.Helper()
	s := n.show()
	p, ok := findPeer(s, id)
	if !ok {
		n.l.t.Fatalf("show of %s does not list peer %q", n.ID, id)
	}
	return p
}

// waitSession waits until n has a current session with peer id.
func (n *node) waitSession(id string, timeout time.Duration) peerStatus {
	n.l.t.Helper()
	var p peerStatus
	waitFor(n.l.t, timeout, n.ID+" to have a session with "+id, func() bool {
		s, err := n.tryShow()
		if err != nil {
			return false
		}
		var ok bool
		p, ok = findPeer(s, id)
		return ok && p.SessionID != ""
	})
	return p
}

// drops is n's count of drops for reason, charged to peer id ("" for the
// interface-level counters).
func (n *node) drops(id, reason string) uint64 {
	n.l.t.Helper()
	if id == "" {
		return n.show().Drops[reason]
	}
	return n.peer(id).Drops[reason]
}

// refusal finds the refusal n recorded for claimed peer ID id.
func refusal(s status, id string) (refusalStatus, bool) {
	for _, r := range s.Refusals {
		if r.PeerID == id {
			return r, true
		}
	}
	return refusalStatus{}, false
}

func (n *node) statePath() string {
	if n.NoStateFile {
		return ""
	}
	return filepath.Join(n.dir, n.ID+".state")
}
