package hsrate

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

const (
	// identities is how many initiators take turns; configured is how many
	// peers the responder knows (the rest have made-up keys).
	identities = 256
	configured = 1000
	// batch is how many initiations are prepared, untimed, before the
	// responder answers them, timed.
	batch = 64
	// spacing is how long an identity rests between two initiations.
	spacing = 25 * time.Millisecond
)

// cpuTimer counts the benchmark thread's CPU time while running, next to
// b's wall clock. The goroutine is locked to its thread, so the thread's
// CPU time is the work's.
type cpuTimer struct {
	b       *testing.B
	total   time.Duration
	started time.Duration
}

func newCPUTimer(b *testing.B) *cpuTimer {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	b.ResetTimer()
	b.StopTimer()
	return &cpuTimer{b: b}
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (t *cpuTimer) Start() { t.started = threadCPU(); t.b.StartTimer() }
func (t *cpuTimer) Stop()  { t.b.StopTimer(); t.total += threadCPU() - t.started }

// report prints handshakes per second of wall time and per second of the
// thread's CPU time (handshakes per core).
func (t *cpuTimer) report() {
	t.b.ReportMetric(float64(t.b.N)/t.b.Elapsed().Seconds(), "handshakes/s")
	if t.total > 0 {
		t.b.ReportMetric(float64(t.b.N)/t.total.Seconds(), "handshakes/cpu-s")
	}
}

// turns hands out identities round robin, each at most once per spacing.
type turns struct {
	next int
	last [identities]time.Time // when each identity's last initiation was answered
}

// take returns the next identity, after sleeping (untimed) until it may
// initiate again.
func (r *turns) take() int {
	i := r.next
	r.next = (r.next + 1) % identities
	if d := spacing - time.Since(r.last[i]); d > 0 {
		time.Sleep(d)
	}
	return i
}

// answered records that the identities in ids were answered now.
func (r *turns) answered(ids []int) {
	now := time.Now()
	for _, i := range ids {
		r.last[i] = now
	}
}
