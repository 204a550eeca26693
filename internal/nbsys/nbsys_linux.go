// Package nbsys makes the packet path's system calls on non-blocking fds
// without telling the Go scheduler (RawSyscall).
//
// Why (issue 21, docs/PERFORMANCE.md "sysmon stays asleep"): syscall.Syscall
// runs entersyscall and exitsyscall, and entersyscall wakes the runtime's
// sysmon thread whenever it sleeps deeply, which it does as soon as every P
// is idle. Quiet traffic (a ping every few milliseconds) thus woke sysmon
// for every packet, and each time it then polled every 20 us until the
// daemon was idle again: a quarter of the daemon's CPU at 200 pings/s went
// to sysmon, and its wake-ups competed with the packet's own. The calls here
// never block (the fds are O_NONBLOCK, or the poll's timeout is 0) and
// return within microseconds, so the scheduler loses nothing by not being
// told: no P needs retaking from them. A call that may block (a poll that
// sleeps) must not come here.
package nbsys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads from a non-blocking fd.
func Read(fd int, p []byte) (int, unix.Errno) { return readWrite(unix.SYS_READ, fd, p) }

// Write writes to a non-blocking fd.
func Write(fd int, p []byte) (int, unix.Errno) { return readWrite(unix.SYS_WRITE, fd, p) }

func readWrite(trap uintptr, fd int, p []byte) (int, unix.Errno) {
	var base unsafe.Pointer
	if len(p) > 0 {
		base = unsafe.Pointer(&p[0])
	}
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(base), uintptr(len(p)))
	return int(r), e
}

// Readv reads into iov (at least one element) from a non-blocking fd.
func Readv(fd int, iov []unix.Iovec) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(r), e
}

// Writev writes iov (at least one element) to a non-blocking fd.
func Writev(fd int, iov []unix.Iovec) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(r), e
}

// Recvmmsg receives into msgs (at least one) with MSG_DONTWAIT added to flags.
func Recvmmsg(fd int, msgs []unix.Mmsghdr, flags int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	return int(r), e
}

// Sendmmsg sends msgs (at least one) with MSG_DONTWAIT added to flags.
func Sendmmsg(fd int, msgs []unix.Mmsghdr, flags int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	return int(r), e
}

// PollNow polls fds (at least one) without waiting: poll(2) with a zero
// timeout. It reports how many have events.
func PollNow(fds []unix.PollFd) (int, unix.Errno) {
	var zero unix.Timespec
	r, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return int(r), e
}
