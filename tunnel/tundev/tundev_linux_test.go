package tundev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"stunnel/internal/busypoll/busypolltest"
	"stunnel/internal/netns"
	"stunnel/internal/roottest"
)

func needRoot(t *testing.T) { roottest.Require(t, "network namespaces and TUN devices") }

var nsSeq atomic.Int32

// newNS makes a namespace unique to this run and deletes it at cleanup.
func newNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("tundev-%d-%d", os.Getpid(), nsSeq.Add(1))
	if err := netns.Add(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	return name
}

// newDevice creates a Device inside ns, closed at cleanup.
func newDevice(t *testing.T, ns string, addr string) *Device {
	t.Helper()
	var d *Device
	err := netns.Do(ns, func() (err error) {
		d, err = Create("tun%d", 1420)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	name, _ := d.Name()
	if addr != "" {
		if err := netns.AddAddr(ns, name, netip.MustParsePrefix(addr)); err != nil {
			t.Fatal(err)
		}
		if _, err := netns.Run(ns, "ip", "link", "set", name, "up"); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestCloseUnblocksRead(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	d := newDevice(t, ns, "")
	if mtu, err := d.MTU(); mtu != 1420 || err != nil {
		t.Fatalf("MTU() = %d, %v", mtu, err)
	}
	if d.BatchSize() != batchSize || d.File() != nil {
		t.Fatal("BatchSize or File wrong")
	}
	bufs, sizes := testBufs(4)
	done := make(chan error, 1)
	go func() {
		_, err := d.Read(bufs, sizes, testOffset)
		done <- err
	}()
	// The link is down: nothing arrives, so Read must block in poll(2).
	waitInPoll(t, done)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Read returned %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Read within 10 s")
	}
	if _, err := d.Read(bufs, sizes, testOffset); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := d.Write(bufs[:1], testOffset); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if _, ok := <-d.Events(); ok {
		t.Fatal("Events channel not closed")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.Read(bufs, sizes, 4); err == nil {
		t.Fatal("offset 4 accepted")
	}
}

// forward copies packets from one device to the other until from is
// closed, then reports nil (or the first error). With small set, every
// other Read gets only 3 bufs, so GSO frames must be held over.
func forward(from, to *Device, small bool, done chan<- error) {
	bufs, sizes := testBufs(batchSize)
	out := make([][]byte, 0, batchSize)
	for iter := 0; ; iter++ {
		k := batchSize
		if small && iter%2 == 1 {
			k = 3
		}
		n, err := from.Read(bufs[:k], sizes[:k], testOffset)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				err = nil
			}
			done <- err
			return
		}
		out = out[:0]
		for i := range n {
			pkt := bufs[i][testOffset : testOffset+sizes[i]]
			// Read must hand out TCP/UDP packets with complete, valid
			// checksums (Write will replace them, so check here).
			if in := classify(pkt, true); in.kind != kindRaw {
				if err := refVerify(pkt); err != nil {
					done <- fmt.Errorf("read a bad packet: %v: %x", err, pkt[:min(len(pkt), 64)])
					return
				}
			}
			out = append(out, bufs[i][:testOffset+sizes[i]])
		}
		if _, err := to.Write(out, testOffset); err != nil && !errors.Is(err, os.ErrClosed) {
			done <- err
			return
		}
	}
}

func TestForwardBetweenNamespaces(t *testing.T) {
	needRoot(t)
	nsA, nsB := newNS(t), newNS(t)
	devA := newDevice(t, nsA, "198.19.250.1/24")
	devB := newDevice(t, nsB, "198.19.250.2/24")
	for _, d := range []struct {
		ns, addr string
		dev      *Device
	}{{nsA, "fd00:7d::1/64", devA}, {nsB, "fd00:7d::2/64", devB}} {
		name, _ := d.dev.Name()
		if err := netns.AddAddr(d.ns, name, netip.MustParsePrefix(d.addr)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 2)
	go forward(devA, devB, false, done)
	go forward(devB, devA, true, done)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		devA.Close()
		devB.Close()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("forwarding: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not stop a forwarding loop within 10 s")
			}
		}
	}
	t.Cleanup(stop)

	if out, err := netns.Run(nsA, "ping", "-c", "3", "-i", "0.2", "-W", "5", "198.19.250.2"); err != nil {
		t.Fatalf("ping through the devices: %v\n%s", err, out)
	}

	t.Run("tcp", func(t *testing.T) { tcpTransfer(t, nsA, nsB, "tcp4", "198.19.250.2", 64<<20) })
	t.Run("tcp6", func(t *testing.T) { tcpTransfer(t, nsA, nsB, "tcp6", "fd00:7d::2", 16<<20) })
	t.Run("udp-gso", func(t *testing.T) {
		if !devA.UDPOffload() {
			t.Skip("SKIPPING: the kernel refused USO on TUN")
		}
		udpGSOTransfer(t, nsA, nsB)
	})

	stop()
	sa, sb := devA.Stats(), devB.Stats()
	t.Logf("A: %+v", sa)
	t.Logf("B: %+v", sb)
	if sb.ReadHeld == 0 {
		t.Errorf("B's Read never held a frame over, though every other call had 3 bufs: %+v", sb)
	}
	if sb.ReadGSOFrames == 0 || sb.ReadSegments == 0 {
		t.Errorf("B's Read saw no GSO frames from the sender: %+v", sb)
	}
	if sa.WriteGroups == 0 || sa.WriteCoalesced < 2*sa.WriteGroups {
		t.Errorf("A's Write coalesced nothing: %+v", sa)
	}
	if sa.BadFrames+sb.BadFrames != 0 {
		t.Errorf("bad frames: A %d, B %d", sa.BadFrames, sb.BadFrames)
	}
}

// pattern is the byte at position i of the transfers.
func pattern(i int64) byte { return byte(i*7 + i>>11) }

// tcpTransfer sends n bytes from a listener on addr in nsB to a client in
// nsA and verifies every byte.
func tcpTransfer(t *testing.T, nsA, nsB, network, addr string, n int64) {
	var ln net.Listener
	if err := netns.Do(nsB, func() (err error) {
		ln, err = net.Listen(network, net.JoinHostPort(addr, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		buf := make([]byte, 256<<10)
		for off := int64(0); off < n; {
			m := min(int64(len(buf)), n-off)
			for i := range m {
				buf[i] = pattern(off + i)
			}
			if _, err := c.Write(buf[:m]); err != nil {
				srvErr <- fmt.Errorf("server write at %d: %w", off, err)
				return
			}
			off += m
		}
		srvErr <- nil
	}()
	var c net.Conn
	if err := netns.Do(nsA, func() (err error) {
		c, err = net.DialTimeout(network, ln.Addr().String(), 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	start := time.Now()
	buf := make([]byte, 256<<10)
	var got int64
	for got < n {
		m, err := c.Read(buf)
		for i := range m {
			if buf[i] != pattern(got+int64(i)) {
				t.Fatalf("byte %d: %#x, want %#x", got+int64(i), buf[i], pattern(got+int64(i)))
			}
		}
		got += int64(m)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, n, err)
		}
	}
	el := time.Since(start)
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
	if m, err := c.Read(buf); m != 0 || err != io.EOF {
		t.Fatalf("after the transfer: %d bytes, %v; want EOF", m, err)
	}
	t.Logf("%d MiB in %v: %.0f Mbit/s (verification included)", n>>20, el.Round(time.Millisecond), float64(n)*8/el.Seconds()/1e6)
}

// udpGSOTransfer sends UDP GSO super-datagrams (UDP_SEGMENT) from nsA to a
// socket in nsB and checks every datagram arrives whole and in order.
func udpGSOTransfer(t *testing.T, nsA, nsB string) {
	var rx, tx *net.UDPConn
	if err := netns.Do(nsB, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 19, 250, 2)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := netns.Do(nsA, func() (err error) {
		tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const seg, nseg, sends = 1000, 20, 5
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], seg)
	rx.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, seg*nseg)
	var want [][]byte
	for s := range sends {
		for i := range msg {
			msg[i] = byte(i/seg + s*nseg)
		}
		if _, _, err := tx.WriteMsgUDP(msg, oob, nil); err != nil {
			t.Fatalf("UDP_SEGMENT send: %v", err)
		}
		for i := range nseg {
			want = append(want, append([]byte{}, msg[i*seg:(i+1)*seg]...))
		}
	}
	buf := make([]byte, 65536)
	for i, w := range want {
		m, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:m], w) {
			t.Fatalf("datagram %d: %d bytes starting %x, want %d bytes starting %x", i, m, buf[:min(m, 4)], len(w), w[:4])
		}
	}
}

// waitInPoll waits (up to 10 s) until the blocked Read sleeps: some thread
// of this process sits in ppoll(2) (unix.Poll is ppoll; Go's runtime never
// polls that way, it uses epoll and futexes), or, as an idle reader does, a
// goroutine is parked in the netpoller by busypoll's Sleeper.
func waitInPoll(t *testing.T, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("Read returned before Close: %v", err)
		default:
		}
		if busypolltest.AsleepInNetpoller() > 0 {
			return
		}
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
			if f := bytes.Fields(b); len(f) > 0 && string(f[0]) == fmt.Sprint(unix.SYS_PPOLL) {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatal("no thread blocked in poll(2) within 10 s")
}
