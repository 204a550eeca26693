package tundev

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"stunnel/internal/netns"
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
	for { // drain anything the kernel sent when the link came up
		n, err := d.ReadReady(bufs, sizes, testOffset)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
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
	ns := newNS(t)
	d := newDevice(t, ns, "198.19.250.1/24")
	name, _ := d.Name()
	// The kernel forwards what we write to 198.19.252.0/24 back out of the
	// TUN, still one GSO frame: an easy way to be sent one.
	// No IPv6 on the link: its router solicitations would wake the waits
	// this test wants to see end only for their own reasons.
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
	for { // drain what the link sent coming up
		n, err := d.ReadReady(bufs, sizes, testOffset)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
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
