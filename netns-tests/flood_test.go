package netnstests

import (
	"encoding/binary"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/netns"
)

// valid-mac1 initiations from a stranger's address on a's side of the link:
// anyone who knows b's public key can make these.
// Sent to port: the victim's listen port, or a closed one for comparison.
// The namespace must have 198.18.1.66 on u0.
func startFlood(t *testing.T, ns string, victim *node, port int) (stop func() int64) {
	t.Helper()
	pub, err := handshake.ParsePublicKey(victim.pub())
	if err != nil {
		t.Fatal(err)
	}
	var conn *net.UDPConn
	if err := netns.Do(ns, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 1, 66)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	to := &net.UDPAddr{IP: net.ParseIP(victim.Underlay), Port: port}
	gen := handshake.NewCookieGenerator(pub, nil)
	var sent atomic.Int64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		msg := make([]byte, handshake.InitiationSize)
		msg[0], msg[1] = handshake.MessageTypeInitiation, handshake.ProtocolVersion
		for i := uint64(0); ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			binary.LittleEndian.PutUint64(msg[8:], i*0x9e3779b97f4a7c15)
			gen.AddMACs(msg)
			if _, err := conn.WriteToUDP(msg, to); err == nil {
				sent.Add(1)
			}
		}
	}()
	var once sync.Once
	stop = func() int64 {
		once.Do(func() { close(quit); wg.Wait(); conn.Close() })
		return sent.Load()
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestHandshakeDuringValidMAC1Flood measures what a flood of valid-mac1
// initiations from one stranger costs (issue 12, finding 4): the transfer
// rate of an established session under the flood against the same flood
// aimed at a closed port (the generator shares the machine's CPUs, so that
// is the fair baseline), and how long a restarted peer takes from start to
// a working ping while the flood goes on, and the responder's RSS. It
// asserts only what must hold whatever the machine: both transfers arrive
// intact and the restarted peer gets in (within 20 s); the figures are
// logged. (The
// initiator still waits one retry interval, about 5 s, after a cookie reply
// before retrying with mac2: that is the initiator's side,
// tunnel/handshake.go.)
func TestHandshakeDuringValidMAC1Flood(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	l.addAddr(a.ns, "u0", "198.18.1.66/24")
	pingUntil(t, a.ns, overB, sessionWait)
	const d = 3 * time.Second
	// The flood alone, with no transfer: what it costs the responder's memory.
	rssBefore := vmRSS(t, b.cmd.Process.Pid)
	stop := startFlood(t, a.ns, b, listenPort)
	time.Sleep(d) // the flood's duration, not a wait for a condition
	sentAlone := stop()
	rssFloodAlone := vmRSS(t, b.cmd.Process.Pid)
	stop = startFlood(t, a.ns, b, listenPort+1)
	closed := tcpStream(t, a.ns, b.ns, overB, streamOpts{Duration: d})
	sentClosed := stop()
	stop = startFlood(t, a.ns, b, listenPort)
	flooded := tcpStream(t, a.ns, b.ns, overB, streamOpts{Duration: d})
	rssFlood := vmRSS(t, b.cmd.Process.Pid)
	mbit := func(n int64) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }

	a.stop()
	start := time.Now()
	a.start()
	pingUntil(t, a.ns, overB, 20*time.Second)
	took := time.Since(start)
	sent := stop()
	st := b.show()
	ratio := float64(flooded.Received) / float64(closed.Received)
	t.Logf("flood: transfer %.0f Mbit/s with the flood at a closed port (%d sent), %.0f Mbit/s with it at the tunnel (%d sent): %.0f%%; restarted peer pinged %v after start; b's RSS %d KiB before, %d KiB after %d initiations of flood alone, %d KiB after the flooded transfer, %d KiB at the end; b drops %v",
		mbit(closed.Received), sentClosed, mbit(flooded.Received), sent, 100*ratio, took.Round(time.Millisecond),
		rssBefore, rssFloodAlone, sentAlone, rssFlood, vmRSS(t, b.cmd.Process.Pid), st.Drops)
	// No assertion on ratio: on a shared 2-core machine it ranged from 27%
	// to 146% between runs (a closed port costs the kernel an ICMP error; the
	// tunnel's one UDP reader must read every flood datagram beside the
	// data). It is a measurement; the goal is at least 50%.
}

// vmRSS is a process's resident set in KiB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
