package tundev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"stunnel/internal/netns"
	"stunnel/internal/waitfor"
)

// TestReadReadyPicksUpTheReply: the premise of the tunnel's pickUpReplies.
// The kernel answers a packet written to the TUN before Write returns, so
// a ReadReady right after the Write finds the answer without waiting; and
// with nothing queued ReadReady returns at once with nothing.
func TestReadReadyPicksUpTheReply(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	d := newDevice(t, ns, "198.19.250.1/24")
	bufs, sizes := testBufs(batchSize)
	drain(t, d, bufs, sizes)
	out := [][]byte{append(make([]byte, testOffset), echoRequest(7)...)}
	if _, err := d.Write(out, testOffset); err != nil {
		t.Fatal(err)
	}
	n, err := d.ReadReady(bufs, sizes, testOffset)
	if err != nil || n != 1 {
		t.Fatalf("ReadReady right after the Write: %d packets, %v; want the echo reply", n, err)
	}
	reply := bufs[0][testOffset : testOffset+sizes[0]]
	if reply[9] != 1 || reply[20] != 0 || !bytes.Equal(reply[16:20], []byte{198, 19, 250, 9}) {
		t.Fatalf("not an echo reply to 198.19.250.9: % x", reply[:24])
	}
	if n, err := d.ReadReady(bufs, sizes, testOffset); n != 0 || err != nil {
		t.Fatalf("ReadReady with nothing queued: %d, %v", n, err)
	}
}

// TestHeldFrameWakesWaitReadable: a GSO frame that ReadReady could not
// hand out whole is held in the device, out of the kernel's queue. A reader
// about to sleep in WaitReadable must not sleep on it: the kick wakes it.
func TestHeldFrameWakesWaitReadable(t *testing.T) {
	needRoot(t)
	d := newLoopingDevice(t)
	const segs = 20
	batch := make([][]byte, segs)
	for i := range batch {
		pkt := tcpSeg(0, func(s *spec) {
			s.src, s.dst = []byte{198, 19, 251, 9}, []byte{198, 19, 252, 9}
			s.seq, s.id, s.payload = uint32(i*1000), uint16(i), payload(1000, byte(i))
		})
		batch[i] = append(make([]byte, testOffset), pkt...)
	}
	bufs, sizes := testBufs(segs)
	drain(t, d, bufs, sizes)
	if _, err := d.Write(batch, testOffset); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReadable(); err != nil { // the forwarded frame is queued
		t.Fatal(err)
	}
	n, err := d.ReadReady(bufs[:3], sizes[:3], testOffset)
	if err != nil || n != 3 || d.Stats().ReadHeld != 1 {
		t.Fatalf("ReadReady into 3 bufs: %d, %v, %d held; want 3 packets and the frame held", n, err, d.Stats().ReadHeld)
	}
	// The kernel's queue is empty now: only the kick can end this wait.
	woke := make(chan error, 1)
	go func() { woke <- d.waitReadable() }()
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("waitReadable with a held frame: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitReadable slept on a held frame for 10 s: no kick")
	}
	got := n
	for got < segs {
		n, err := d.ReadReady(bufs[:7], sizes[:7], testOffset)
		if err != nil || n == 0 {
			t.Fatalf("after %d of %d packets: ReadReady %d, %v", got, segs, n, err)
		}
		got += n
	}
	if d.held.Load() {
		t.Fatal("still held after every packet was handed out")
	}
	// Nothing held, nothing queued: WaitReadable sleeps until Close.
	done := make(chan error, 1)
	go func() { done <- d.WaitReadable() }()
	waitInPoll(t, done)
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("WaitReadable after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end WaitReadable within 10 s")
	}
}

// TestHeldFramesComeOutWhole: a GSO frame held over is handed out intact
// across calls, whether it was short enough to be read into the caller's
// buffer (it is moved out of it, since segment 0 is built there) or was
// read into the device's own frame buffer (it stays there, since nothing is
// read into it before the frame is all out), and whether or not the next
// frame is already queued behind it.
func TestHeldFramesComeOutWhole(t *testing.T) {
	needRoot(t)
	d := newLoopingDevice(t)
	bufs, sizes := testBufs(batchSize)
	drain(t, d, bufs, sizes)
	for _, c := range []struct {
		segs, size int
	}{{5, 100}, {30, 1300}} {
		var want [][]byte
		for frame := range 2 {
			batch := make([][]byte, c.segs)
			for i := range batch {
				pkt := tcpSeg(0, func(s *spec) {
					s.src, s.dst = []byte{198, 19, 251, 9}, []byte{198, 19, 252, 9}
					s.sport = uint16(3000 + frame)
					s.seq, s.id, s.payload = uint32(i*c.size), uint16(i), payload(c.size, byte(i+frame*50))
				})
				want = append(want, pkt)
				batch[i] = append(make([]byte, testOffset), pkt...)
			}
			if _, err := d.Write(batch, testOffset); err != nil {
				t.Fatal(err)
			}
		}
		var got [][]byte
		waitfor.Cond(t, 10*time.Second, time.Millisecond, fmt.Sprintf("%d packets read 2 at a time", len(want)), func() bool {
			n, err := d.ReadReady(bufs[:2], sizes[:2], testOffset)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				got = append(got, append([]byte(nil), bufs[i][testOffset:testOffset+sizes[i]]...))
				// The buffers are the caller's now: the tunnel seals
				// packets in place and sends them off.
				for j := range bufs[i] {
					bufs[i][j] = 0xee
				}
			}
			return len(got) >= len(want)
		})
		if len(got) != len(want) {
			t.Fatalf("%d segments of %d bytes: %d of %d packets came out", c.segs, c.size, len(got), 2*c.segs)
		}
		for i := range want {
			// The forward lowered the TTL, and with it the IP checksum.
			w, g := want[i], got[i]
			if len(g) != len(w) || !bytes.Equal(g[:8], w[:8]) || g[8] != w[8]-1 || g[9] != w[9] || !bytes.Equal(g[12:], w[12:]) {
				t.Fatalf("%d segments of %d bytes: packet %d differs:\n got % x\nwant % x", c.segs, c.size, i, g[:min(len(g), 60)], w[:min(len(w), 60)])
			}
		}
	}
	if s := d.Stats(); s.ReadHeld < 2 || s.ReadGSOFrames < 4 || s.BadFrames != 0 {
		t.Fatalf("want every frame read as GSO and held over: %+v", s)
	}
}

// newLoopingDevice is a device in a new namespace whose kernel forwards what
// is written to it for 198.19.252.0/24 back out of it, still one GSO frame
// per flow: an easy way to be sent one.
func newLoopingDevice(t *testing.T) *Device {
	t.Helper()
	ns := newNS(t)
	d := newDevice(t, ns, "198.19.250.1/24")
	name, _ := d.Name()
	// No IPv6 on the link: its router solicitations would wake the waits
	// the tests want to see end only for their own reasons.
	for _, args := range [][]string{
		{"sysctl", "-qw", "net.ipv6.conf." + name + ".disable_ipv6=1"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf." + name + ".rp_filter=0"},
		{"ip", "route", "add", "198.19.252.0/24", "dev", name},
	} {
		if _, err := netns.Run(ns, args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// drain reads what the kernel sent when the link came up.
func drain(t *testing.T, d *Device, bufs [][]byte, sizes []int) {
	t.Helper()
	for {
		n, err := d.ReadReady(bufs, sizes, testOffset)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// TestReadPacketAboveTheMTU: Read lands a lone packet in the caller's buffer
// only up to the MTU the device was made with, and the rest of a frame in
// its own buffer. A packet longer than that MTU (the link's MTU was raised
// since) still comes back whole, in the caller's buffer, and the next one
// too.
func TestReadPacketAboveTheMTU(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	d := newDevice(t, ns, "198.19.250.1/24")
	name, _ := d.Name()
	if _, err := netns.Run(ns, "ip", "link", "set", name, "mtu", "9000"); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := testBufs(batchSize)
	drain(t, d, bufs, sizes)
	for _, n := range []int{4000, 76, 8000} {
		req := echoRequestOf(uint16(n), n)
		out := [][]byte{append(make([]byte, testOffset), req...)}
		if _, err := d.Write(out, testOffset); err != nil {
			t.Fatal(err)
		}
		clear(bufs[0])
		got, err := d.ReadReady(bufs, sizes, testOffset)
		if err != nil || got != 1 {
			t.Fatalf("%d-byte echo: ReadReady = %d packets, %v; want the reply", len(req), got, err)
		}
		reply := bufs[0][testOffset : testOffset+sizes[0]]
		if len(reply) != len(req) || reply[9] != 1 || reply[20] != 0 {
			t.Fatalf("%d-byte echo: got %d bytes, protocol %d, ICMP type %d; want an echo reply as long", len(req), len(reply), reply[9], reply[20])
		}
		if !bytes.Equal(reply[28:], req[28:]) {
			t.Fatalf("%d-byte echo: the reply's data differs from the request's", len(req))
		}
	}
}
