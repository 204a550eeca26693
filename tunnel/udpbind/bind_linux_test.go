package udpbind

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

const waitLimit = 20 * time.Second // deadline for conditions, not a timing assertion

type testBind struct {
	*Bind
	fns  []conn.ReceiveFunc
	port uint16
}

func openBind(t testing.TB) *testBind {
	t.Helper()
	b := New()
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatalf("Open(0): %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return &testBind{b, fns, port}
}

func (b *testBind) ep(t testing.TB, ip string) conn.Endpoint {
	t.Helper()
	ep, err := b.ParseEndpoint(net.JoinHostPort(ip, strconv.Itoa(int(b.port))))
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func (b *testBind) recvFn(v6 bool) conn.ReceiveFunc {
	if v6 {
		if len(b.fns) < 2 {
			return nil
		}
		return b.fns[1]
	}
	return b.fns[0]
}

type got struct {
	data []byte
	ep   *Endpoint
}

// collect receives n datagrams with bufSize-byte buffers, failing the test
// if they have not all come by the deadline (the bind is closed to unblock).
func collect(t *testing.T, b *testBind, fn conn.ReceiveFunc, n, nbufs, bufSize int) []got {
	t.Helper()
	type result struct {
		out []got
		err error
	}
	done := make(chan result, 1)
	go func() {
		bufs, sizes := mkbufs(nbufs, bufSize)
		eps := make([]conn.Endpoint, nbufs)
		var out []got
		for len(out) < n {
			k, err := fn(bufs, sizes, eps)
			if err != nil {
				done <- result{out, err}
				return
			}
			for i := range k {
				out = append(out, got{append([]byte(nil), bufs[i][:sizes[i]]...), eps[i].(*Endpoint)})
			}
		}
		done <- result{out, nil}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("receive after %d of %d datagrams: %v", len(r.out), n, r.err)
		}
		return r.out
	case <-time.After(waitLimit):
		b.Close()
		<-done
		t.Fatalf("fewer than %d datagrams within %v", n, waitLimit)
		return nil
	}
}

func payload(tag, i, size int) []byte {
	p := make([]byte, size)
	for j := range p {
		p[j] = byte(tag + i + j)
	}
	if size >= 4 {
		binary.BigEndian.PutUint16(p, uint16(tag))
		binary.BigEndian.PutUint16(p[2:], uint16(i))
	}
	return p
}

func loopbacks(t *testing.T) []string {
	ips := []string{"127.0.0.1"}
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		c.Close()
		ips = append(ips, "::1")
	} else {
		t.Logf("no IPv6 loopback (%v): IPv4 only", err)
	}
	return ips
}

func TestSendReceive(t *testing.T) {
	for _, ip := range loopbacks(t) {
		for _, tc := range []struct {
			name string
			lens []int
			gro  bool
		}{
			{"equal", repeat(64, 1420), true},
			{"mixed", []int{100, 100, 50, 1420, 1420, 1420, 3, 1, 9000, 9000, 200, 1500}, false},
			{"short last", append(repeat(10, 1000), 10), true},
		} {
			t.Run(ip+"/"+tc.name, func(t *testing.T) {
				a, b := openBind(t), openBind(t)
				v6 := strings.Contains(ip, ":")
				bufs := make([][]byte, len(tc.lens))
				for i, n := range tc.lens {
					bufs[i] = payload(7, i, n)
				}
				if err := a.Send(bufs, b.ep(t, ip)); err != nil {
					t.Fatalf("Send: %v", err)
				}
				out := collect(t, b, b.recvFn(v6), len(bufs), BatchSize, 1<<16)
				from := netip.AddrPortFrom(netip.MustParseAddr(ip), a.port)
				for i, g := range out {
					if string(g.data) != string(bufs[i]) {
						t.Fatalf("datagram %d: %d bytes, not the %d sent in that place", i, len(g.data), len(bufs[i]))
					}
					if g.ep.AddrPort() != from {
						t.Fatalf("datagram %d from %v, want %v", i, g.ep.AddrPort(), from)
					}
					if g.ep.SrcIP().String() != ip {
						t.Fatalf("datagram %d came to %v, want %s", i, g.ep.SrcIP(), ip)
					}
				}
				if out[0].ep != out[len(out)-1].ep {
					t.Error("one flow's datagrams got different Endpoints (no cache)")
				}
				if tc.gro {
					if s := a.Stats(); s.GSOSends == 0 {
						t.Errorf("sender stats %+v: equal-size batch not sent with GSO", s)
					}
					if s := b.Stats(); s.GROMessages == 0 {
						t.Errorf("receiver stats %+v: no GRO message split", s)
					}
				}
			})
		}
	}
}

func repeat(n, size int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = size
	}
	return r
}

// A datagram too big for the caller's buffer is dropped and counted; the
// ones around it still arrive.
func TestDatagramBiggerThanBuffer(t *testing.T) {
	a, b := openBind(t), openBind(t)
	lens := []int{1420, 1420, 1420, 500, 500, 2000, 300}
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = payload(1, i, n)
	}
	if err := a.Send(bufs, b.ep(t, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	out := collect(t, b, b.fns[0], 3, 8, 1000)
	for i, want := range []int{3, 4, 6} {
		if string(out[i].data) != string(bufs[want]) {
			t.Fatalf("datagram %d is not sent datagram %d", i, want)
		}
	}
	if d := b.Stats().Dropped; d != 4 {
		t.Fatalf("Dropped = %d, want 4", d)
	}
}

// A GRO message that does not fit in the caller's buffers is handed out
// over several calls, nothing lost.
func TestPendingAcrossCalls(t *testing.T) {
	a, b := openBind(t), openBind(t)
	bufs := make([][]byte, 40)
	for i := range bufs {
		bufs[i] = payload(2, i, 800)
	}
	if err := a.Send(bufs, b.ep(t, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	out := collect(t, b, b.fns[0], len(bufs), 3, 1<<16)
	for i := range out {
		if string(out[i].data) != string(bufs[i]) {
			t.Fatalf("datagram %d out of place", i)
		}
	}
}

// An empty datagram is handed out as one of size 0, in its place among the
// others, so the tunnel counts it as malformed rather than never seeing it.
func TestEmptyDatagramIsHandedOut(t *testing.T) {
	b := openBind(t)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// "four" only lets a bind that loses the empty one fail at once.
	for _, p := range [][]byte{[]byte("one"), {}, []byte("three"), []byte("four")} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	out := collect(t, b, b.fns[0], 3, 8, 1<<16)
	for i, want := range []string{"one", "", "three"} {
		if string(out[i].data) != want {
			t.Fatalf("datagram %d is %q, want %q", i, out[i].data, want)
		}
	}
	if out[1].ep == nil || out[1].ep.AddrPort() != netip.MustParseAddrPort(c.LocalAddr().String()) {
		t.Fatalf("the empty datagram's endpoint is %v, want %v", out[1].ep, c.LocalAddr())
	}
}
