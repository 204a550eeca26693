package busypoll

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// eventFd returns a poll set on a fresh eventfd and a function that makes it
// readable.
func eventFd(t *testing.T) ([]unix.PollFd, func()) {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ready := func() {
		one := [8]byte{1}
		if _, err := unix.Write(fd, one[:]); err != nil {
			t.Fatal(err)
		}
	}
	return []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ready
}

// stepClock advances by step on every reading.
func stepClock(step time.Duration) (func() time.Time, *time.Time) {
	now := time.Unix(1000, 0)
	return func() time.Time { now = now.Add(step); return now }, &now
}

func TestPollFindsReadyFd(t *testing.T) {
	fds, ready := eventFd(t)
	ready()
	p := Poller{streak: Streak}
	if !p.Poll(fds) || fds[0].Revents&unix.POLLIN == 0 {
		t.Fatal("Poll did not report the readable eventfd")
	}
}

func TestPollGivesUpAfterSpin(t *testing.T) {
	fds, _ := eventFd(t)
	clock, _ := stepClock(5 * time.Microsecond)
	p := Poller{Now: clock, streak: Streak}
	if p.Poll(fds) {
		t.Fatal("Poll reported events on an idle eventfd")
	}
	if p.wasted < Spin || p.wasted > Spin+10*time.Microsecond {
		t.Fatalf("spun %v, want about %v", p.wasted, Spin)
	}
}

// Fruitless spinning stops for the rest of the second once the budget is
// spent (then even a ready fd is not polled: the caller's blocking poll
// will see it), and resumes the next second.
func TestBudgetCapsFruitlessSpinning(t *testing.T) {
	fds, ready := eventFd(t)
	clock, now := stepClock(5 * time.Microsecond)
	p := Poller{Now: clock}
	spins := 0
	for p.wasted < Budget {
		p.streak = Streak // as if the sleeps in between were short
		if p.Poll(fds) {
			t.Fatal("events on an idle eventfd")
		}
		spins++
	}
	if want := int(Budget / Spin); spins < want-1 || spins > want+1 {
		t.Fatalf("%d fruitless spins fit the budget, want about %d", spins, want)
	}
	ready()
	p.streak = Streak
	if p.Poll(fds) {
		t.Fatal("Poll spun again within the same second after the budget was spent")
	}
	*now = now.Add(time.Second)
	if !p.Poll(fds) {
		t.Fatal("Poll did not resume in the next second")
	}
}

func TestPollAllocatesNothing(t *testing.T) {
	fds, ready := eventFd(t)
	ready()
	p := Poller{streak: Streak}
	if n := testing.AllocsPerRun(100, func() { p.Poll(fds) }); n != 0 {
		t.Fatalf("%v allocations per Poll", n)
	}
}

// Spinning is adaptive: a fresh Poller (sparse traffic) does not spin; it
// starts after Streak sleeps in a row shorter than Busy, a fruitless spin
// lowers the streak by one, and a sleep longer than Busy ends it.
func TestSpinOnlyWhileWakesComeSoon(t *testing.T) {
	fds, ready := eventFd(t)
	clock, now := stepClock(time.Microsecond)
	p := Poller{Now: clock}
	spinOnce := func() time.Duration {
		before := p.wasted
		if p.Poll(fds) {
			t.Fatal("events on an idle eventfd")
		}
		return p.wasted - before
	}
	if spun := spinOnce(); spun != 0 {
		t.Fatalf("a fresh Poller spun %v; sparse traffic must not spin", spun)
	}
	for i := range Streak {
		*now = now.Add(Busy - 10*time.Microsecond) // slept just under Busy
		p.Woke()
		if i < Streak-1 {
			if spun := spinOnce(); spun != 0 {
				t.Fatalf("spun %v after %d short sleeps, want none before %d", spun, i+1, Streak)
			}
		}
	}
	if spun := spinOnce(); spun < Spin {
		t.Fatalf("spun %v after %d short sleeps, want %v", spun, Streak, Spin)
	}
	// The fruitless spin lowered the streak: one more short sleep restores it.
	if spun := spinOnce(); spun != 0 {
		t.Fatalf("spun %v right after a fruitless spin", spun)
	}
	p.Woke()
	if spun := spinOnce(); spun < Spin {
		t.Fatalf("spun %v after a fruitless spin and a short sleep, want %v", spun, Spin)
	}
	// A sleep longer than Busy (pings 1 ms apart) ends the streak.
	*now = now.Add(time.Millisecond)
	p.Woke()
	p.Woke() // ignored: no Poll gave up since
	if p.streak != 0 {
		t.Fatalf("streak %d after a 1 ms sleep, want 0", p.streak)
	}
	// A spin that finds work keeps the streak.
	p.streak = Streak
	ready()
	if !p.Poll(fds) || !p.Poll(fds) || p.streak != Streak {
		t.Fatalf("a spin that found work lost the streak (%d)", p.streak)
	}
}
