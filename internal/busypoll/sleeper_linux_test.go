package busypoll

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sleepAsync runs s.Sleep(fds) in a goroutine and returns its result channel.
func sleepAsync(s *Sleeper, fds []unix.PollFd) chan error {
	done := make(chan error, 1)
	go func() { done <- s.Sleep(fds) }()
	return done
}

func drain(t *testing.T, fd int32) {
	t.Helper()
	var buf [8]byte
	if _, err := unix.Read(int(fd), buf[:]); err != nil {
		t.Fatal(err)
	}
}

// waitDone fails unless done reports success within a deadline.
func waitDone(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Sleep did not return after an fd became readable")
	}
}

// A Sleeper wakes for every new event, again and again (the netpoller's
// edge-triggered registration of the epoll fd must re-arm), sets Revents
// like poll(2), and returns at once when an fd is ready already.
func TestSleeperWakesOnEachEvent(t *testing.T) {
	fds, ready := eventFd(t)
	s, err := NewSleeper(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		done := sleepAsync(s, fds)
		if i%2 == 0 { // sometimes the event comes before the sleep
			select {
			case err := <-done:
				t.Fatalf("round %d: Sleep returned (%v) with nothing readable", i, err)
			case <-time.After(time.Millisecond):
			}
		}
		ready()
		waitDone(t, done)
		if fds[0].Revents&unix.POLLIN == 0 {
			t.Fatalf("round %d: Revents %#x, want POLLIN", i, fds[0].Revents)
		}
		drain(t, fds[0].Fd)
	}
	ready()
	if err := s.Sleep(fds); err != nil || fds[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("Sleep on a ready fd: %v, Revents %#x", err, fds[0].Revents)
	}
}

// Any of the fds wakes it (readers sleep on their fd and a close eventfd).
func TestSleeperWakesOnSecondFd(t *testing.T) {
	a, _ := eventFd(t)
	b, readyB := eventFd(t)
	fds := []unix.PollFd{a[0], b[0]}
	s, err := NewSleeper(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := sleepAsync(s, fds)
	readyB()
	waitDone(t, done)
	if fds[0].Revents != 0 || fds[1].Revents&unix.POLLIN == 0 {
		t.Fatalf("Revents %#x %#x, want only the second", fds[0].Revents, fds[1].Revents)
	}
}

func TestNewSleeperRejectsBadFd(t *testing.T) {
	if _, err := NewSleeper([]unix.PollFd{{Fd: -1, Events: unix.POLLIN}}); err == nil {
		t.Fatal("NewSleeper accepted fd -1")
	}
}

// Poller.Sleep sleeps in the netpoller, busy or not, and wakes on the fd.
func TestPollerSleepUsesNetpoller(t *testing.T) {
	fds, ready := eventFd(t)
	for _, streak := range []int{0, Streak} {
		p := Poller{streak: streak}
		done := make(chan error, 1)
		go func() { done <- p.Sleep(fds) }()
		ready()
		waitDone(t, done)
		if p.deep == nil || p.noDeep {
			t.Fatalf("streak %d: Sleep did not sleep in the netpoller", streak)
		}
		drain(t, fds[0].Fd)
		p.Close()
		if p.deep != nil || !p.noDeep {
			t.Fatal("Close left the Sleeper")
		}
	}
}

// If the netpoller cannot be used (a regular file: epoll refuses it), Sleep
// falls back to poll(2), which says a file is always readable, and stays there.
func TestPollerSleepFallsBack(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "plain")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
	p := Poller{}
	defer p.Close()
	if err := p.Sleep(fds); err != nil || fds[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("fallback Sleep: %v, Revents %#x", err, fds[0].Revents)
	}
	if p.deep != nil || !p.noDeep {
		t.Fatal("Sleep did not fall back to poll(2) for a file epoll refuses")
	}
}

// A sleep allocates nothing: a reader sleeps once per packet when traffic
// is sparse.
func TestSleeperSleepAllocatesNothing(t *testing.T) {
	fds, ready := eventFd(t)
	s, err := NewSleeper(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ready() // readable: each Sleep returns at once
	if n := testing.AllocsPerRun(100, func() {
		if err := s.Sleep(fds); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Sleep", n)
	}
}
