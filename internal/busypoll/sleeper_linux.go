package busypoll

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"stunnel/internal/nbsys"
)

// Sleeper lets a reader sleep in the Go runtime's netpoller instead of a
// blocking poll(2).
//
// Why (issue 21, measured in docs/PERFORMANCE.md): a goroutine blocked in
// poll(2) keeps its P in the syscall state. While any P is in a syscall the
// runtime's sysmon thread does not sleep: it wakes every 20 us to see
// whether to take the P back, takes it, and starts again after each
// hand-off. At 200 pings/s that thread made half of the daemon's CPU (about
// 2,000 wake-ups a second per daemon, ten per packet). A goroutine parked in
// the netpoller holds no P, so an idle reader leaves sysmon asleep, as
// wireguard-go's readers do. Every sleep is taken here, a busy flow's too:
// with sparse sleeps in the netpoller and busy ones in poll(2), two readers
// could hold both Ps of a 2-CPU machine in poll(2) while a goroutine the
// netpoller had woken waited for sysmon to take a P back, up to 10 ms
// (ping p99 at 1000/s: 10 ms against 0.3 ms; TCP throughput the same).
//
// The fds are put in an epoll instance of their own (level-triggered), and
// that instance, readable whenever one of them has an event, is what the
// netpoller watches. A Sleeper is used by one goroutine at a time; Close it
// once that goroutine no longer sleeps in it.
type Sleeper struct {
	f  *os.File // the epoll fd, registered with the netpoller
	rc syscall.RawConn

	// poll is what Sleep hands the netpoller (pollFds), made once: a
	// closure made per sleep would be allocated per sleep. fds and perr
	// are its argument and its error, owned by the sleeping goroutine.
	poll func(uintptr) bool
	fds  []unix.PollFd
	perr error
}

// NewSleeper returns a Sleeper for fds (their Events: POLLIN, POLLOUT).
func NewSleeper(fds []unix.PollFd) (*Sleeper, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("busypoll: epoll_create1: %w", err)
	}
	for _, p := range fds {
		ev := unix.EpollEvent{Events: uint32(p.Events), Fd: p.Fd} // POLLIN/POLLOUT have the EPOLL values
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(p.Fd), &ev); err != nil {
			unix.Close(epfd)
			return nil, fmt.Errorf("busypoll: epoll_ctl fd %d: %w", p.Fd, err)
		}
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("busypoll: epoll fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "busypoll-epoll") // non-blocking: os registers it with the netpoller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("busypoll: epoll fd: %w", err)
	}
	s := &Sleeper{f: f, rc: rc}
	s.poll = s.pollFds
	return s, nil
}

// pollFds polls s.fds without blocking: true (stop waiting) once one has
// events or polling fails (s.perr), false to park until the epoll fd is
// readable and try again.
func (s *Sleeper) pollFds(uintptr) bool {
	n, errno := nbsys.PollNow(s.fds)
	if errno != 0 && errno != unix.EINTR {
		s.perr = errno
		return true
	}
	return n > 0
}

// Sleep returns once one of fds has events (fds[i].Revents says which, as
// after poll(2)); the fds must be the ones given to NewSleeper. An error
// means the Sleeper cannot sleep (the caller falls back to poll(2)).
func (s *Sleeper) Sleep(fds []unix.PollFd) error {
	s.fds, s.perr = fds, nil
	err := s.rc.Read(s.poll)
	perr := s.perr
	s.fds, s.perr = nil, nil
	if perr != nil {
		return fmt.Errorf("busypoll: poll: %w", perr)
	}
	if err != nil {
		return fmt.Errorf("busypoll: waiting in the netpoller: %w", err)
	}
	return nil
}

// Close releases the epoll instance (not the fds it watched).
func (s *Sleeper) Close() error { return s.f.Close() }
