// Package cputimer times a benchmark by its thread's CPU time as well as by
// the wall clock: on a shared machine wall time depends on the load of
// others, the CPU time of the one thread doing the work does not.
package cputimer

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Timer counts the benchmark thread's CPU time while running. The
// benchmark goroutine is locked to its thread, so the thread's CPU time is
// the work's. Used by one goroutine.
type Timer struct {
	b       *testing.B
	total   time.Duration
	started time.Duration
	running bool
}

// New locks the goroutine to its thread and returns a stopped timer (b's
// timer stopped too).
func New(b *testing.B) *Timer {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	b.ResetTimer()
	b.StopTimer()
	return &Timer{b: b}
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Start starts both clocks.
func (t *Timer) Start() { t.started, t.running = threadCPU(), true; t.b.StartTimer() }

// Stop stops both clocks.
func (t *Timer) Stop() {
	t.b.StopTimer()
	if t.running {
		t.total += threadCPU() - t.started
		t.running = false
	}
}

// Report stops the clocks and reports b.N operations per second of wall
// time (unit "/s") and per second of the thread's CPU time (unit "/cpu-s"),
// e.g. Report("handshakes").
func (t *Timer) Report(unit string) {
	t.Stop()
	t.b.ReportMetric(float64(t.b.N)/t.b.Elapsed().Seconds(), unit+"/s")
	if t.total > 0 {
		t.b.ReportMetric(float64(t.b.N)/t.total.Seconds(), unit+"/cpu-s")
	}
}
