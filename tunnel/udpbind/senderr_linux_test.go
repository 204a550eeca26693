package udpbind

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// A GSO message refused for its size (a segment above the path MTU, where
// a lone datagram would be fragmented) is resent datagram by datagram, in
// order, and the next Send tries GSO again.
func TestGSORefusedForSizeResendsOneByOne(t *testing.T) {
	a, b := openBind(t), openBind(t)
	refused := 0
	a.sendmmsg = func(fd int, msgs []unix.Mmsghdr) (int, unix.Errno) {
		if msgs[0].Hdr.Controllen != 0 && refused == 0 {
			refused++
			return -1, unix.EMSGSIZE
		}
		return sendmmsg(fd, msgs)
	}
	bufs := make([][]byte, 10)
	for i := range bufs {
		bufs[i] = payload(7, i, 1200)
	}
	if err := a.Send(bufs, b.ep(t, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if refused != 1 || a.noGSO.Load() {
		t.Fatalf("refused %d times, noGSO %v; want one refusal and GSO still on", refused, a.noGSO.Load())
	}
	out := collect(t, b, b.fns[0], len(bufs), BatchSize, 1<<16)
	for i := range out {
		if string(out[i].data) != string(bufs[i]) {
			t.Fatalf("datagram %d out of place", i)
		}
	}
	before := a.Stats().GSOSends
	if err := a.Send(bufs, b.ep(t, "127.0.0.1")); err != nil || a.Stats().GSOSends == before {
		t.Fatalf("second Send: %v, GSO sends %d -> %d; want GSO used again", err, before, a.Stats().GSOSends)
	}
	collect(t, b, b.fns[0], len(bufs), BatchSize, 1<<16)
}

// A datagram the kernel refuses (a firewall's EPERM, say) is dropped and
// counted, Send reports it, and the datagrams after it still go out.
func TestRefusedDatagramDoesNotDropTheRest(t *testing.T) {
	a, b := openBind(t), openBind(t)
	a.sendmmsg = func(fd int, msgs []unix.Mmsghdr) (int, unix.Errno) {
		if msgs[0].Hdr.Iov.Len == 333 {
			return -1, unix.EPERM
		}
		return sendmmsg(fd, msgs[:1]) // one at a time, so the refused one leads a call
	}
	lens := []int{100, 200, 333, 400, 500}
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = payload(8, i, n)
	}
	err := a.Send(bufs, b.ep(t, "127.0.0.1"))
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("Send: %v, want the EPERM reported", err)
	}
	if a.Stats().SendDropped != 1 {
		t.Fatalf("SendDropped = %d, want 1", a.Stats().SendDropped)
	}
	out := collect(t, b, b.fns[0], 4, BatchSize, 1<<16)
	for i, want := range []int{0, 1, 3, 4} {
		if string(out[i].data) != string(bufs[want]) {
			t.Fatalf("datagram %d is not input %d", i, want)
		}
	}
}
