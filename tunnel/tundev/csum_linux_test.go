package tundev

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"stunnel/internal/netns"
)

// udpCsumErrors reads Udp InCsumErrors of the namespace's kernel.
func udpCsumErrors(t *testing.T, ns string) int {
	t.Helper()
	out, err := netns.Run(ns, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("reading /proc/net/snmp in %s: %v", ns, err)
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InCsumErrors" && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Udp InCsumErrors in /proc/net/snmp:\n%s", out)
	return 0
}

// TestKernelDropsBadChecksums: UDP datagrams written through Write reach a
// socket only when their checksums are right (or zero, IPv4's "none"), alone
// and inside a burst the planner may merge with USO; the kernel counts the
// bad ones. On the old planner the kernel recomputed every checksum and the
// socket got the corrupted datagrams (issue 12, finding 1).
func TestKernelDropsBadChecksums(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	dev := newDevice(t, ns, "198.19.250.2/24")
	var rx *net.UDPConn
	if err := netns.Do(ns, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 19, 250, 2), Port: 99})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	udp := func(i int, zero bool) []byte {
		return build(spec{udp: true, sport: 53, dport: 99, id: uint16(i), payload: payload(1200, byte(i)), udpZero: zero})
	}
	bad := func(p []byte) []byte { p[len(p)-1] ^= 0x5a; return p }
	before := udpCsumErrors(t, ns)
	// Each batch is written with one Write call; want are the payloads the
	// socket must get, in order.
	type batch struct {
		name string
		pkts [][]byte
		good []int
	}
	batches := []batch{
		{"bad alone", [][]byte{bad(udp(0, false))}, nil},
		{"zero alone", [][]byte{udp(1, true)}, []int{0}},
		{"burst", [][]byte{udp(10, false), udp(11, false), bad(udp(12, false)), udp(13, true), udp(14, false), udp(15, false), bad(udp(16, false))}, []int{0, 1, 3, 4, 5}},
	}
	nbad := 0
	var want [][]byte
	for _, b := range batches {
		bufs := make([][]byte, len(b.pkts))
		for i, p := range b.pkts {
			bufs[i] = append(make([]byte, testOffset), p...)
		}
		for _, i := range b.good {
			want = append(want, append([]byte{}, b.pkts[i][28:]...))
		}
		nbad += len(b.pkts) - len(b.good)
		if _, err := dev.Write(bufs, testOffset); err != nil {
			t.Fatalf("%s: Write: %v", b.name, err)
		}
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	for i, w := range want {
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes starting %x, want %d bytes starting %x (a corrupted one was delivered?)", i, n, buf[:4], len(w), w[:4])
		}
	}
	rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond)) // nothing more may come: the bad ones were dropped
	if n, err := rx.Read(buf); err == nil {
		t.Fatalf("an extra %d-byte datagram arrived: a bad checksum was fixed on the way", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for udpCsumErrors(t, ns)-before < nbad {
		if time.Now().After(deadline) {
			t.Fatalf("kernel counted %d checksum errors, want %d", udpCsumErrors(t, ns)-before, nbad)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("USO on the device: %v; stats %+v", dev.UDPOffload(), dev.Stats())
}
