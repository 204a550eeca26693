// Package busypoll lets a reader poll its file descriptors for a moment
// before it sleeps in poll(2).
//
// Why: on a virtual machine, waking a thread whose CPU has halted costs tens
// of microseconds (the hypervisor has to run the vCPU again), and a packet
// crossing the tunnel wakes four threads (TUN and UDP reader at each end).
// A reader that keeps polling for Spin after its last packet finds the next
// one of a busy flow without sleeping, and keeps its CPU from halting so
// the other threads' wake-ups stay cheap. Measured on the bench (2 vCPUs,
// one TCP stream, same run): +25-30 % throughput and -30 % ping round trip
// (docs/PERFORMANCE.md). It is the trade Linux's busy_poll and the Go
// scheduler's own spinning make.
//
// Spinning is adaptive (issue 21): it only pays while packets come close
// together, so a Poller spins only after Streak wakes in a row came soon: a
// spin that caught a packet, or a sleep shorter than Busy (the caller
// reports the end of each sleep with Woke). A fruitless spin lowers the
// streak by one, a sleep longer than Busy ends it. Sparse traffic (pings at
// up to a thousand per second, whose packets are a millisecond or more
// apart) thus costs a sleep and a wake per packet, as without busy polling,
// while a busy flow keeps spinning through its short gaps. The sleeps
// themselves are taken in the Go netpoller (Sleep, Sleeper), where a
// sleeping reader holds no P and leaves the runtime's sysmon asleep.
//
// The cost is bounded: between polls the thread yields its CPU
// (sched_yield), so runnable threads are not held up, and spinning that
// finds nothing is capped at Budget per second per Poller, after which it
// sleeps at once until the next second. A reader only spins after it was
// woken by a packet, so an idle tunnel costs nothing. (A 50 ms budget gave
// back about half of the throughput gain in the same runs; 200 ms kept it.)
package busypoll

import (
	"time"

	"golang.org/x/sys/unix"

	"stunnel/internal/nbsys"
)

const (
	// Spin is how long Poll keeps polling before giving up.
	Spin = 50 * time.Microsecond
	// Budget is how much fruitless spinning a Poller may do per second.
	Budget = 200 * time.Millisecond
	// Streak is how many wakes in a row must have come soon (a spin that
	// found work, or a sleep shorter than Busy) before Poll spins.
	Streak = 3
	// Busy is the longest sleep that still counts as a busy flow: a
	// reader whose packets come within Busy of each other runs a flow of
	// thousands of packets per second, where spinning keeps both its
	// packets and its vCPU's wake-ups cheap; pings at up to 1000/s sleep
	// longer than that between packets.
	Busy = 5 * Spin
)

// Poller is one reader's spinning state. It is owned by one goroutine at a
// time (the reader's own lock or loop guards it); the zero value is ready.
type Poller struct {
	// Now is the clock (nil: time.Now); tests inject one.
	Now func() time.Time

	second time.Time     // start of the current one-second budget window
	wasted time.Duration // fruitless spinning in that window

	streak int       // wakes in a row that found work within Spin (capped at Streak)
	slept  time.Time // when Poll last gave up (the caller then sleeps); zero: not sleeping

	deep   *Sleeper // where Sleep sleeps; made on first use
	noDeep bool     // making or using deep failed (or Close): Sleep uses poll(2)
}

// Poll polls fds without blocking, again and again, for up to Spin, and
// reports whether one of them has events (fds[i].Revents says which).
// It returns false at once when this second's budget is spent; the caller
// then sleeps in a blocking poll.
// It also returns false at once, without polling, unless the last Streak
// wakes found work within Spin.
func (p *Poller) Poll(fds []unix.PollFd) bool {
	now := p.now()
	p.slept = now // unless we find work below
	if p.streak < Streak {
		return false
	}
	if now.Sub(p.second) >= time.Second {
		p.second, p.wasted = now, 0
	}
	if p.wasted >= Budget {
		return false
	}
	start := now
	for {
		if n, errno := nbsys.PollNow(fds); n > 0 && errno == 0 {
			p.slept = time.Time{}
			return true
		}
		now = p.now()
		if spun := now.Sub(start); spun >= Spin {
			p.wasted += spun
			p.streak--
			p.slept = now
			return false
		}
		yield()
	}
}

// Woke tells the Poller that the caller's sleep after Poll gave up has
// ended: a sleep shorter than Busy means a busy flow. Calls without a
// sleep before are ignored.
func (p *Poller) Woke() {
	if p.slept.IsZero() {
		return
	}
	if p.now().Sub(p.slept) < Busy {
		p.streak = min(p.streak+1, Streak)
	} else {
		p.streak = 0
	}
	p.slept = time.Time{}
}

// Sleep blocks until fds have events, or a signal interrupts it
// (unix.EINTR), and reports the wake (Woke). It sleeps in the netpoller
// (Sleeper), or in poll(2) if that cannot be set up. The fds must be the
// same on every call.
func (p *Poller) Sleep(fds []unix.PollFd) error {
	defer p.Woke() // a short sleep says spinning would pay
	if !p.noDeep {
		if p.deep == nil {
			s, err := NewSleeper(fds)
			if err != nil {
				p.noDeep = true
				return p.sleepPoll(fds)
			}
			p.deep = s
		}
		if err := p.deep.Sleep(fds); err != nil {
			p.noDeep = true
			return p.sleepPoll(fds)
		}
		return nil
	}
	return p.sleepPoll(fds)
}

func (p *Poller) sleepPoll(fds []unix.PollFd) error {
	_, err := unix.Poll(fds, -1)
	return err
}

// Close releases what Sleep made. The Poller must not sleep any more.
func (p *Poller) Close() {
	if p.deep != nil {
		_ = p.deep.Close()
		p.deep = nil
	}
	p.noDeep = true
}

func (p *Poller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// yield gives the CPU to any runnable thread; RawSyscall, since it never
// blocks and the Go scheduler need not hand off the P.
func yield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
