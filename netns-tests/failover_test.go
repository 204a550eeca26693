package netnstests

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/netns"
	"stunnel/tickets"
)

const (
	failoverAfter = 3 * time.Second
	streamEvery   = 2 * time.Millisecond // the counted UDP stream's interval
)

// bridge makes a switch namespace named short and plugs each host into it
// through the named interface with the given address.
func (l *lab) bridge(short string, ports []bridgePort) {
	l.t.Helper()
	sw := l.ns(short)
	l.run(sw, "ip", "link", "add", "br0", "type", "bridge")
	l.run(sw, "ip", "link", "set", "br0", "up")
	for i, p := range ports {
		port := "p" + strconv.Itoa(i+1)
		l.veth(p.ns, p.ifname, p.addr, sw, port, "")
		l.run(sw, "ip", "link", "set", port, "master", "br0")
	}
}

type bridgePort struct{ ns, ifname, addr string }

// writeTicketKeys writes a group's shared ticket key file (0600).
func writeTicketKeys(t *testing.T, dir string) string {
	t.Helper()
	k, err := tickets.GenerateKey(nil, time.Now().Add(-time.Minute), 2*time.Hour, 13*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "group-ticket.keys")
	if err := tickets.WriteKeyFile(path, []tickets.Key{k}); err != nil {
		t.Fatal(err)
	}
	return path
}

// stream sends sequence-numbered datagrams every streamEvery until stopped;
// sent says how many went out.
type stream struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	sent  uint64
	times []time.Time // times[i]: when datagram i went out
}

func startStream(t *testing.T, s *udpSender) *stream {
	st := &stream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		buf := make([]byte, 64)
		copy(buf, udpMagic[:])
		tk := time.NewTicker(streamEvery)
		defer tk.Stop()
		for {
			select {
			case <-st.stop:
				return
			case <-tk.C:
			}
			st.mu.Lock()
			binary.BigEndian.PutUint64(buf[8:16], st.sent)
			st.sent++
			st.times = append(st.times, time.Now())
			st.mu.Unlock()
			_, _ = s.conn.Write(buf) // a lost datagram is what we count
		}
	}()
	t.Cleanup(st.halt)
	return st
}

func (st *stream) halt() {
	select {
	case <-st.stop:
	default:
		close(st.stop)
	}
	<-st.done
}

func (st *stream) count() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sent
}

// gap is how many sequence numbers in [from, to) the counter never saw.
func (c *udpCounter) gap(from, to uint64) (missing uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; i < to; i++ {
		if c.seen[i] == 0 {
			missing++
		}
	}
	return missing
}

// outage is the longest time in [from, to) between two datagrams of the
// stream that both arrived: what a user of the link saw as the outage.
func (st *stream) outage(c *udpCounter, from, to uint64) time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	var longest time.Duration
	last := time.Time{}
	// Start a little before from: the silence began with the last datagram
	// that arrived before the kill.
	for i := from - min(from, 100); i < to; i++ {
		if c.seen[i] == 0 {
			continue
		}
		if !last.IsZero() {
			longest = max(longest, st.times[i].Sub(last))
		}
		last = st.times[i]
	}
	return longest
}

// pinger runs `ping -i 0.01` until stopped and reports what it lost.
type pinger struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

func startPinger(t *testing.T, ns, addr string) *pinger {
	t.Helper()
	p := &pinger{out: &lockedBuffer{}}
	p.cmd = netns.Exec(ns, "ping", "-n", "-q", "-i", "0.01", "-W", "1", addr)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// finish stops ping (SIGINT prints the summary) and returns sent, lost.
func (p *pinger) finish(t *testing.T) (sent, lost int) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	_ = p.cmd.Wait()
	out := string(p.out.Bytes())
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ping summary in %q", out)
	}
	tx, _ := strconv.Atoi(m[1])
	rx, _ := strconv.Atoi(m[2])
	return tx, tx - rx
}

// Scenario: a gateway group. Gateways A and B share one static key and one
// ticket key file and both route the LAN 198.19.20.0/24; a client (with a
// LAN of its own) lists both endpoints. A dies (kill -9): the client moves
// to B by resumption within failover_after + a round trip + 1 s. A comes
// back, B dies: the client moves back to A, again by resumption.
func TestGatewayFailover(t *testing.T) { gatewayFailover(t, false) }

// gatewayFailover is TestGatewayFailover with the group's ticket-key ring
// in a shared key file, or (etcdRing) in etcd (TestGatewayFailoverEtcdRing).
func gatewayFailover(t *testing.T, etcdRing bool) {
	l := newLab(t)
	lanC, cl, gwA, gwB, lanG := l.ns("lanc"), l.ns("cl"), l.ns("gwa"), l.ns("gwb"), l.ns("lang")
	const (
		netC, netG   = "198.19.10.0/24", "198.19.20.0/24"
		lanCAddr     = "198.19.10.2"
		lanGAddr     = "198.19.20.2"
		aLAN, bLAN   = "198.19.20.1", "198.19.20.3"
		underC       = "198.18.7.1/24"
		underA       = "198.18.7.2/24"
		underB       = "198.18.7.3/24"
		gwOverlay    = "198.19.2.1/24"
		clientOverly = "198.19.2.10/24"
	)
	l.veth(lanC, "e0", lanCAddr+"/24", cl, "lan", "198.19.10.1/24")
	l.run(lanC, "ip", "route", "add", netG, "via", "198.19.10.1")
	hosts := map[string]string{cl: underC, gwA: underA, gwB: underB}
	var ring *groupRing
	if etcdRing {
		ring = l.etcdRingHost(hosts, "198.18.7.200")
	}
	l.hub(hosts)
	l.bridge("lsw", []bridgePort{{gwA, "lan", aLAN + "/24"}, {gwB, "lan", bLAN + "/24"}, {lanG, "e0", lanGAddr + "/24"}})
	// The LAN's return route points at the gateway in service. In production
	// VRRP or a routing protocol moves it; here the test does, at each kill.
	l.run(lanG, "ip", "route", "add", netC, "via", aLAN)

	a := l.newNode(gwA, "gw-a", underA, gwOverlay)
	b := l.newNode(gwB, "gw-b", underB, gwOverlay)
	b.Key = a.Key // one identity for the group
	c := l.newNode(cl, "client", underC, clientOverly)
	for _, g := range []*node{a, b} {
		g.ID = "gw" // the group presents one peer ID
		// Keepalives back to the client: its failover_after measures silence,
		// and a gateway without them is silent while the client only sends.
		g.Peers = []peerConf{{ID: c.ID, PublicKey: c.pub(), AllowedIPs: []string{"198.19.2.10/32", netC}, Keepalive: "1s"}}
	}
	c.Peers = []peerConf{{ID: "gw", PublicKey: a.pub(), AllowedIPs: []string{"198.19.2.1/32", netG},
		Keepalive: "1s", Extra: []string{
			fmt.Sprintf("endpoint = [%q, %q]", a.endpoint(), b.endpoint()),
			fmt.Sprintf("failover_after = %q", failoverAfter),
		}}}
	if etcdRing { // one ticket-key ring for the group: in etcd, or in a shared file
		ring.start(t)
		for _, g := range []*node{a, b} {
			g.Extra = ring.section("")
		}
	} else {
		keyFile := writeTicketKeys(t, l.dir)
		for _, g := range []*node{a, b} {
			g.Extra = fmt.Sprintf("[tickets]\nkey_file = %q\n", keyFile)
		}
	}
	a.start()
	b.start()
	c.start() // tickets on by default: it resumes with whatever gateway issued them
	if etcdRing {
		for _, g := range []*node{a, b} {
			g.waitTicketRing(t, 10*time.Second, "the group's keys from etcd", func(r ticketRingState) bool {
				return r.State == "connected" && r.Keys >= 1
			})
		}
	}

	pingUntil(t, lanC, lanGAddr, sessionWait)
	p := c.peer("gw")
	if p.Endpoint != a.endpoint() || len(p.StandbyEndpoints) != 1 || p.StandbyEndpoints[0] != b.endpoint() || p.Failovers != 0 {
		t.Fatalf("client before any failure: endpoint %q standby %q failovers %d", p.Endpoint, p.StandbyEndpoints, p.Failovers)
	}
	counter := listenCounter(t, lanG, lanGAddr)
	st := startStream(t, newUDPSender(t, lanC, counter.addr()))
	rtt := 5 * time.Millisecond // veths and a bridge: well under a millisecond; generous

	phase := func(name string, dying, survivor *node, survivorLAN string, wantFailovers uint64) {
		t.Helper()
		before := c.peer("gw")
		pg := startPinger(t, lanC, lanGAddr)
		start := st.count()
		waitFor(t, 5*time.Second, "the stream to flow", func() bool {
			missing := counter.gap(start, st.count())
			return st.count() > start+100 && missing < 5
		})
		from := st.count()
		dying.signal(syscall.SIGKILL)
		killed := time.Now()
		l.run(lanG, "ip", "route", "replace", netC, "via", survivorLAN)
		waitFor(t, 20*time.Second, "the client on "+survivor.ID, func() bool {
			s, err := c.tryShow()
			pr, ok := findPeer(s, "gw")
			return err == nil && ok && pr.Endpoint == survivor.endpoint() && pr.HandshakesResumed > before.HandshakesResumed
		})
		back := time.Since(killed)
		// Let the stream run past the outage before reading the gap.
		mark := st.count()
		waitFor(t, 10*time.Second, "the stream to arrive again", func() bool {
			missing := counter.gap(mark, st.count())
			return st.count() > mark+100 && missing < 10
		})
		to := st.count()
		missing := counter.gap(from, to)
		pSent, pLost := pg.finish(t)
		t.Logf("%s: %s seen on %s by resumption %d ms after the kill", name, c.ID, survivor.ID, back.Milliseconds())
		outage := st.outage(counter, from, to)
		t.Logf("%s: outage %d ms (longest silence of the stream), %d of %d stream datagrams lost, %d of %d pings (10 ms) lost = ~%d ms",
			name, outage.Milliseconds(), missing, to-from, pLost, pSent, pLost*10)
		limit := failoverAfter + rtt + time.Second
		if outage >= limit {
			t.Errorf("%s: outage %v, want under failover_after + 1 RTT + 1 s = %v", name, outage, limit)
		}
		after := c.peer("gw")
		if after.Failovers != wantFailovers {
			t.Errorf("%s: %d failovers, want %d", name, after.Failovers, wantFailovers)
		}
		if after.HandshakesResumed <= before.HandshakesResumed {
			t.Errorf("%s: moved without resumption (resumed %d -> %d)", name, before.HandshakesResumed, after.HandshakesResumed)
		}
		if gp := survivor.peer(c.ID); gp.HandshakesResumed == 0 {
			t.Errorf("%s: %s shows no resumed handshake", name, survivor.ID)
		}
		if len(after.StandbyEndpoints) != 1 || after.StandbyEndpoints[0] != dying.endpoint() {
			t.Errorf("%s: standby endpoints %q, want [%s]", name, after.StandbyEndpoints, dying.endpoint())
		}
	}
	phase("A killed", a, b, bLAN, 1)

	a.start() // the same ring (key file or etcd): B's tickets open on A
	phase("B killed", b, a, aLAN, 2)
}

// A gateway that moves to a new address under the same DNS name is reached
// again within 10 s: the client looks the name up again when its endpoint
// falls silent (and every 30 s), not only after a handshake gave up. The name
// lives in the client namespace's hosts file, which `ip netns exec` mounts
// over /etc/hosts; it is rewritten in place under a running ping.
func TestDNSMovedGateway(t *testing.T) {
	l := newLab(t)
	cl, gw := l.ns("dcl"), l.ns("dgw")
	const (
		underC, underG, movedG = "198.18.8.1/24", "198.18.8.2/24", "198.18.8.3"
		name                   = "gw.stunnel.test"
	)
	l.hub(map[string]string{cl: underC, gw: underG})
	etc := filepath.Join("/etc/netns", cl)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(etc) })
	hosts := filepath.Join(etc, "hosts")
	writeHosts := func(addr string) {
		t.Helper()
		// In place (same inode): the bind mount of a running daemon sees it.
		f, err := os.OpenFile(hosts, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(f, "127.0.0.1 localhost\n%s %s\n", addr, name)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	writeHosts(addrOf(underG))

	g := l.newNode(gw, "dns-gw", underG, "198.19.3.1/24")
	c := l.newNode(cl, "dns-client", underC, "198.19.3.2/24")
	g.addPeer(c, false, "198.19.3.2/32")
	// No keepalives from the gateway: they would leave from its new address
	// and the client would find it by roaming, not by DNS.
	// Keep the new address when the old one (the primary) goes.
	l.sysctl(gw, "net.ipv4.conf.all.promote_secondaries", "1")
	l.sysctl(gw, "net.ipv4.conf.u0.promote_secondaries", "1")
	c.Peers = []peerConf{{ID: g.ID, PublicKey: g.pub(), AllowedIPs: []string{"198.19.3.1/32"},
		Endpoint: fmt.Sprintf("%s:%d", name, listenPort), Keepalive: "1s",
		Extra: []string{`failover_after = "2s"`}}}
	g.start()
	c.start()
	pingUntil(t, cl, "198.19.3.1", sessionWait)
	pg := startPinger(t, cl, "198.19.3.1")

	// The gateway moves: new address, old one gone, DNS (hosts) updated.
	l.addAddr(gw, "u0", movedG+"/24")
	l.run(gw, "ip", "addr", "del", underG, "dev", "u0")
	writeHosts(movedG)
	moved := time.Now()
	want := fmt.Sprintf("%s:%d", movedG, listenPort)
	waitFor(t, 15*time.Second, "the client to reach the gateway at its new address", func() bool {
		s, err := c.tryShow()
		p, ok := findPeer(s, g.ID)
		return err == nil && ok && p.Endpoint == want && tryPing(cl, "198.19.3.1", 1, 1) == nil
	})
	back := time.Since(moved)
	sent, lost := pg.finish(t)
	t.Logf("gateway moved under its name: reachable again after %.1f s (%d of %d pings at 10 ms lost)", back.Seconds(), lost, sent)
	if back > 10*time.Second {
		t.Errorf("back after %v, want within 10 s", back)
	}
}
