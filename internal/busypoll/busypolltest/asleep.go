// Package busypolltest helps tests of packages whose readers sleep through
// busypoll.
package busypolltest

import (
	"bytes"
	"runtime"
)

// AsleepInNetpoller counts goroutines parked in the netpoller by busypoll's
// Sleeper: where an idle reader sleeps (internal/busypoll).
func AsleepInNetpoller() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("[IO wait")) && bytes.Contains(g, []byte("busypoll.(*Sleeper).Sleep")) {
			n++
		}
	}
	return n
}
