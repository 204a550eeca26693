package nbsys

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

func nonblockingPipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func TestReadWritePoll(t *testing.T) {
	r, w := nonblockingPipe(t)
	fds := []unix.PollFd{{Fd: int32(r), Events: unix.POLLIN}}
	if n, e := PollNow(fds); n != 0 || e != 0 {
		t.Fatalf("PollNow on an empty pipe = %d, %v; want 0, no error", n, e)
	}
	buf := make([]byte, 16)
	if n, e := Read(r, buf); e != unix.EAGAIN {
		t.Fatalf("Read of an empty pipe = %d, %v; want EAGAIN, never a wait", n, e)
	}
	if n, e := Write(w, []byte("ab")); n != 2 || e != 0 {
		t.Fatalf("Write = %d, %v", n, e)
	}
	c := []byte("cde")
	iov := []unix.Iovec{{Base: &c[0]}}
	iov[0].SetLen(len(c))
	if n, e := Writev(w, iov); n != 3 || e != 0 {
		t.Fatalf("Writev = %d, %v", n, e)
	}
	if n, e := PollNow(fds); n != 1 || e != 0 || fds[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("PollNow on a pipe with data = %d, %v, revents %#x", n, e, fds[0].Revents)
	}
	head, tail := make([]byte, 2), make([]byte, 8)
	riov := []unix.Iovec{{Base: &head[0]}, {Base: &tail[0]}}
	riov[0].SetLen(len(head))
	riov[1].SetLen(len(tail))
	if n, e := Readv(r, riov); e != 0 || n != 5 || string(head) != "ab" || string(tail[:3]) != "cde" {
		t.Fatalf("Readv = %d, %v, %q %q; want 5: \"ab\" \"cde\"", n, e, head, tail[:3])
	}
	if n, e := Readv(r, riov); e != unix.EAGAIN {
		t.Fatalf("Readv of an empty pipe = %d, %v; want EAGAIN, never a wait", n, e)
	}
	if _, e := Read(-1, buf); e != unix.EBADF {
		t.Fatalf("Read of fd -1: %v; want EBADF", e)
	}
}

func TestSendRecvMmsg(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	payloads := [][]byte{[]byte("one"), []byte("second")}
	out := make([]unix.Mmsghdr, len(payloads))
	outIov := make([]unix.Iovec, len(payloads))
	for i, p := range payloads {
		outIov[i] = unix.Iovec{Base: &p[0]}
		outIov[i].SetLen(len(p))
		out[i].Hdr.Iov = &outIov[i]
		out[i].Hdr.SetIovlen(1)
	}
	in := make([]unix.Mmsghdr, 4)
	inIov := make([]unix.Iovec, 4)
	bufs := make([][]byte, 4)
	for i := range in {
		bufs[i] = make([]byte, 64)
		inIov[i] = unix.Iovec{Base: &bufs[i][0]}
		inIov[i].SetLen(64)
		in[i].Hdr.Iov = &inIov[i]
		in[i].Hdr.SetIovlen(1)
	}
	if n, e := Recvmmsg(fds[1], in, 0); e != unix.EAGAIN {
		t.Fatalf("Recvmmsg with nothing queued = %d, %v; want EAGAIN, never a wait", n, e)
	}
	if n, e := Sendmmsg(fds[0], out, 0); n != 2 || e != 0 {
		t.Fatalf("Sendmmsg = %d, %v", n, e)
	}
	n, e := Recvmmsg(fds[1], in, 0)
	if n != 2 || e != 0 {
		t.Fatalf("Recvmmsg = %d, %v; want both datagrams", n, e)
	}
	for i, p := range payloads {
		if got := bufs[i][:in[i].Len]; !bytes.Equal(got, p) {
			t.Errorf("datagram %d = %q, want %q", i, got, p)
		}
	}
}
