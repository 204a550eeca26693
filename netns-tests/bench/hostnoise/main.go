// Command hostnoise measures what the machine takes from a running thread:
// one thread per CPU, pinned to it, reads the clock in a loop, and every gap
// between two readings of at least -min is a stall (the kernel ran
// something else on that CPU, or the hypervisor did not run the vCPU).
//
//	hostnoise -duration 5s -min 200us
//
// It prints one line per CPU: "cpuN STALLS_PER_S LOST_PCT MAX_MS".
//
// Why the bench runs it (docs/PERFORMANCE.md, "Run 13"): on a small VM a
// ping's p99 is set by such stalls, not by the tunnel. A round trip wakes
// three or four threads; one woken onto a CPU that a kernel thread holds
// (kdamond, under a kernel that does not preempt kernel code) waits for it.
// Printing the stalls beside the p99 rows tells a quiet run from a noisy one.
// It keeps every CPU busy while it runs: run it between measurements.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cpuNoise is what one CPU's thread saw.
type cpuNoise struct {
	cpu    int
	stalls int
	lost   time.Duration
	max    time.Duration
	ran    time.Duration
	err    error
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long to measure")
	minStall := flag.Duration("min", 200*time.Microsecond, "the shortest gap that counts as a stall")
	flag.Parse()
	cpus, err := allowedCPUs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hostnoise: reading the CPUs we may use: %v\n", err)
		os.Exit(1)
	}
	// A P for every spinner and one to spare: with fewer (GOMAXPROCS=1
	// inherited, a cgroup quota) the spinners would take turns and count
	// each other as stalls.
	runtime.GOMAXPROCS(len(cpus) + 1)
	results := make([]cpuNoise, len(cpus))
	var pinned, done sync.WaitGroup
	begin := make(chan struct{})
	for i, cpu := range cpus {
		pinned.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread() // the thread ends with this goroutine: never unpinned
			err := pin(cpu)
			pinned.Done()
			if err != nil {
				results[i] = cpuNoise{cpu: cpu, err: err}
				return
			}
			// Start together, once every spinner is on its own CPU: one
			// still being placed would count as a stall on another's.
			<-begin
			results[i] = watch(cpu, *duration, *minStall, time.Now)
		}()
	}
	pinned.Wait()
	close(begin)
	done.Wait()
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "hostnoise: cpu%d: %v\n", r.cpu, r.err)
			os.Exit(1)
		}
		secs := r.ran.Seconds()
		fmt.Printf("cpu%d %.2f %.3f %.3f\n", r.cpu, float64(r.stalls)/secs,
			100*r.lost.Seconds()/secs, float64(r.max.Microseconds())/1000)
	}
}

// allowedCPUs lists the CPUs this process may run on, in order.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var cpus []int
	for cpu := 0; len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}

// pin keeps the calling thread on cpu.
func pin(cpu int) error {
	var only unix.CPUSet
	only.Set(cpu)
	return unix.SchedSetaffinity(0, &only)
}

// watch reads now in a loop for d and adds up the gaps of at least
// minStall between two readings (time.Now; tests give a scripted clock).
func watch(cpu int, d, minStall time.Duration, now func() time.Time) cpuNoise {
	r := cpuNoise{cpu: cpu}
	start := now()
	last := start
	for {
		t := now()
		if gap := t.Sub(last); gap >= minStall {
			r.stalls++
			r.lost += gap
			r.max = max(r.max, gap)
		}
		last = t
		if r.ran = t.Sub(start); r.ran >= d {
			return r
		}
	}
}
