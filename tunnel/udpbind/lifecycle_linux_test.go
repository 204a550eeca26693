package udpbind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"stunnel/internal/busypoll/busypolltest"
	"stunnel/internal/roottest"
)

// threadsInPoll counts this process's threads blocked in ppoll(2)/poll(2)
// (the Go runtime itself waits in epoll_pwait and futex, never in these).
func threadsInPoll(t *testing.T) int {
	tasks, err := filepath.Glob("/proc/self/task/*/syscall")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // thread exited
		}
		nr, _, _ := strings.Cut(string(b), " ")
		if nr == fmt.Sprint(unix.SYS_PPOLL) || nr == fmt.Sprint(unix.SYS_POLL) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, with a deadline
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	b := New()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	before := threadsInPoll(t)
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			bufs, sizes := mkbufs(4, 2048)
			_, err := fn(bufs, sizes, make([]conn.Endpoint, 4))
			errs <- err
		}()
	}
	// The receives must be asleep: in the netpoller (busypoll.Sleeper), or
	// in poll(2) where the netpoller could not be used.
	waitFor(t, fmt.Sprintf("%d receives asleep", len(fns)), func() bool {
		return threadsInPoll(t)-before+busypolltest.AsleepInNetpoller() >= len(fns)
	})
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range fns {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked receive returned %v, want net.ErrClosed", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Close did not unblock a receive")
		}
	}
	bufs, sizes := mkbufs(1, 10)
	if _, err := fns[0](bufs, sizes, make([]conn.Endpoint, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("receive after Close: %v, want net.ErrClosed", err)
	}
	ep, _ := b.ParseEndpoint("127.0.0.1:9")
	if err := b.Send([][]byte{{1}}, ep); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenAgain(t *testing.T) {
	b := New()
	t.Cleanup(func() { b.Close() })
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		t.Fatal("Open(0) reported port 0")
	}
	if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("Open while open: %v, want ErrBindAlreadyOpen", err)
	}
	v6 := len(fns) == 2
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	fns2, port2, err := b.Open(port)
	if err != nil {
		t.Fatalf("Open(%d) after Close: %v", port, err)
	}
	if port2 != port || len(fns2) != len(fns) {
		t.Fatalf("reopen: port %d with %d sockets, want %d with %d", port2, len(fns2), port, len(fns))
	}
	// The old receive functions stay closed; the new ones work.
	bufs, sizes := mkbufs(1, 10)
	if _, err := fns[0](bufs, sizes, make([]conn.Endpoint, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("old receive after reopen: %v, want net.ErrClosed", err)
	}
	tb := &testBind{b, fns2, port2}
	a := openBind(t)
	if err := a.Send([][]byte{[]byte("hi")}, tb.ep(t, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if g := collect(t, tb, fns2[0], 1, 2, 100); string(g[0].data) != "hi" {
		t.Fatalf("got %q", g[0].data)
	}
	if v6 {
		// Both sockets share the port.
		c, err := net.ListenPacket("udp6", fmt.Sprintf("[::]:%d", port2))
		if err == nil {
			c.Close()
			t.Fatalf("IPv6 port %d is free: the IPv6 socket is not on it", port2)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	b := New()
	for _, tc := range []struct{ in, want string }{
		{"198.18.0.1:51820", "198.18.0.1:51820"},
		{"[fd00::1]:1", "[fd00::1]:1"},
		{"[::ffff:198.18.0.1]:7", "198.18.0.1:7"},
		{"[fe80::1%1]:7", "[fe80::1]:7"},
	} {
		ep, err := b.ParseEndpoint(tc.in)
		if err != nil {
			t.Fatalf("ParseEndpoint(%q): %v", tc.in, err)
		}
		if got := ep.DstToString(); got != tc.want {
			t.Errorf("ParseEndpoint(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if ep.SrcIP().IsValid() || ep.SrcToString() != "" {
			t.Errorf("parsed endpoint %q has a source", tc.in)
		}
		if ap := ep.(*Endpoint).AddrPort(); ep.DstIP() != ap.Addr() || len(ep.DstToBytes()) == 0 {
			t.Errorf("DstIP/DstToBytes of %q", tc.in)
		}
	}
	for _, bad := range []string{"", "example.com:51820", "198.18.0.1", "198.18.0.1:0", "198.18.0.1:65536", "[fe80::1%nosuchif0]:7", "[fd00::1]"} {
		if _, err := b.ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) succeeded", bad)
		}
	}
}

func TestWrongEndpointType(t *testing.T) {
	a := openBind(t)
	if err := a.Send([][]byte{{1}}, &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:9")}); !errors.Is(err, conn.ErrWrongEndpointType) {
		t.Fatalf("Send to a foreign endpoint type: %v", err)
	}
}

func TestSetMark(t *testing.T) {
	roottest.Require(t, "SO_MARK (CAP_NET_ADMIN)")
	b := openBind(t)
	if err := b.SetMark(0x51); err != nil {
		t.Fatal(err)
	}
	c := b.cur.Load()
	for _, s := range []*sock{c.v4, c.v6} {
		if s == nil {
			continue
		}
		if m, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_MARK); err != nil || m != 0x51 {
			t.Fatalf("%s socket mark %#x, %v", s.family(), m, err)
		}
	}
}

// Many goroutines send at once: every datagram arrives once, each
// sender's in its order.
func TestConcurrentSend(t *testing.T) {
	a, b := openBind(t), openBind(t)
	const senders, batches, per = 6, 20, 8
	ep := b.ep(t, "127.0.0.1")
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range batches {
				bufs := make([][]byte, per)
				for i := range bufs {
					bufs[i] = payload(s, k*per+i, 200+s)
				}
				if err := a.Send(bufs, ep); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	out := collect(t, b, b.fns[0], senders*batches*per, BatchSize, 1<<16)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	next := make([]int, senders)
	for _, g := range out {
		s, i := int(g.data[1]), int(g.data[2])<<8|int(g.data[3])
		if s >= senders || i != next[s] || len(g.data) != 200+s {
			t.Fatalf("sender %d datagram %d (%d bytes) out of order, want %d", s, i, len(g.data), next[s])
		}
		next[s]++
	}
}
