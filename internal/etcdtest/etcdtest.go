// Package etcdtest runs real etcd servers (Debian's etcd-server binary) for
// tests: one member or a cluster, on loopback with free ports or inside
// network namespaces, each with a temporary data directory, stopped and
// removed by t.Cleanup even when the test fails.
package etcdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/roottest"
)

// Member is one etcd server process.
type Member struct {
	Name      string
	ClientURL string   // http://IP:PORT
	peerURL   string   //
	prefix    []string // command prefix, e.g. ip netns exec NS
	dataDir   string
	cluster   string // --initial-cluster
	token     string
	logFile   string
	tls       *TLSFiles // nil: plain http
	cmd       *exec.Cmd
	done      chan struct{}
}

// Binary is the etcd server binary used, found on PATH. It also makes sure
// of etcdctl (Debian's etcd-client, which etcd-server only suggests):
// WaitReady asks it whether a member is up, so without it every member
// looked dead, "not healthy within 20s" under a log that says it leads.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		missing(t, "etcd not found on PATH; install etcd-server")
	}
	if _, err := exec.LookPath("etcdctl"); err != nil {
		missing(t, "etcdctl not found on PATH; install etcd-client (the tests ask it whether etcd is up)")
	}
	return p
}

// missing fails or skips the test for a program it needs. CI installs them
// (.ci/run) and must not skip (roottest.Strict).
func missing(t testing.TB, msg string) {
	t.Helper()
	if roottest.Strict() {
		t.Fatal(msg + "; .ci/run installs it")
	}
	t.Skip(msg)
}

// freeLoopbackPort asks the kernel for a free port on 127.0.0.1.
func freeLoopbackPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a one-member etcd on loopback with free ports.
func Start(t testing.TB) *Member {
	t.Helper()
	Binary(t)
	ms := newCluster(t, []string{"127.0.0.1"}, nil, nil, func(string) int { return freeLoopbackPort(t) })
	ms[0].Start(t)
	ms[0].WaitReady(t, 20*time.Second)
	return ms[0]
}

// StartCluster runs len(ips) members, member i listening on ips[i]; when
// namespaces is not nil, member i runs inside namespaces[i]. Ports are
// random (namespaced addresses are private to the test, so clashes with
// other runs cannot happen there). With tlsFiles, clients must use https
// and a client certificate; peers talk plain http among themselves.
func StartCluster(t testing.TB, ips, namespaces []string, tlsFiles *TLSFiles) []*Member {
	t.Helper()
	Binary(t)
	port := func(ip string) int {
		if ip == "127.0.0.1" {
			return freeLoopbackPort(t)
		}
		return 20000 + rand.IntN(30000)
	}
	ms := newCluster(t, ips, namespaces, tlsFiles, port)
	for _, m := range ms {
		m.Start(t)
	}
	for _, m := range ms {
		m.WaitReady(t, 30*time.Second)
	}
	return ms
}

func newCluster(t testing.TB, ips, namespaces []string, tlsFiles *TLSFiles, port func(string) int) []*Member {
	dir := t.TempDir()
	token := fmt.Sprintf("stunnel-test-%d-%d", os.Getpid(), rand.Int64())
	var ms []*Member
	var cluster []string
	scheme := "http"
	if tlsFiles != nil {
		scheme = "https"
	}
	for i, ip := range ips {
		// Two draws can give one port (1 in 30000 in a namespace), and
		// etcd then fails to bind its second listener.
		clientPort, peerPort := port(ip), port(ip)
		for peerPort == clientPort {
			peerPort = port(ip)
		}
		m := &Member{
			tls:       tlsFiles,
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(ip, fmt.Sprint(clientPort))),
			peerURL:   fmt.Sprintf("http://%s", net.JoinHostPort(ip, fmt.Sprint(peerPort))),
			dataDir:   filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)),
			token:     token,
			logFile:   filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		}
		if namespaces != nil {
			m.prefix = []string{"ip", "netns", "exec", namespaces[i]}
		}
		cluster = append(cluster, m.Name+"="+m.peerURL)
		ms = append(ms, m)
	}
	for _, m := range ms {
		m.cluster = strings.Join(cluster, ",")
		t.Cleanup(func() { m.Stop() })
	}
	return ms
}

// Start (re)starts the member's process; its data directory persists
// across Stop and Start, as a restarted server's would.
func (m *Member) Start(t testing.TB) {
	t.Helper()
	state := "new"
	if _, err := os.Stat(m.dataDir); err == nil {
		state = "existing"
	}
	args := append(append([]string{}, m.prefix...), "etcd",
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.cluster,
		"--initial-cluster-token", m.token,
		"--initial-cluster-state", state,
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "warn",
	)
	if m.tls != nil {
		args = append(args, "--cert-file", m.tls.ServerCert, "--key-file", m.tls.ServerKey,
			"--trusted-ca-file", m.tls.CA, "--client-cert-auth")
	}
	log, err := os.OpenFile(m.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(args[0], args[1:]...)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("starting etcd %s: %v", m.Name, err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); log.Close(); close(done) }(m.cmd, m.done)
}

// WaitReady waits until the member answers /health.
func (m *Member) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			t.Fatalf("etcd %s exited at start:\n%s", m.Name, m.Log())
		default:
		}
		if m.healthy() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("etcd %s not healthy within %v:\n%s", m.Name, timeout, m.Log())
}

func (m *Member) healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	args := append(append([]string{}, m.prefix...), "etcdctl", "--endpoints", m.ClientURL)
	if m.tls != nil {
		args = append(args, "--cacert", m.tls.CA, "--cert", m.tls.ClientCert, "--key", m.tls.ClientKey)
	}
	args = append(args, "endpoint", "health")
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	return cmd.Run() == nil
}

// Stop kills the member (SIGKILL: as abrupt as a crash) and waits for it.
func (m *Member) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Kill()
	<-m.done
}

// Log is the member's output so far, for failure messages.
func (m *Member) Log() string {
	b, _ := os.ReadFile(m.logFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
