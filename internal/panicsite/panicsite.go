// Package panicsite names where a recovered panic was raised, for a log
// line: the daemon logs a panic it survives, but never as a stack trace,
// whose argument words can be bytes of a key held in a value.
package panicsite

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
)

// Of is called, directly or not, from a deferred function that recovered
// a panic. It returns the first frames above runtime.gopanic that are not
// the runtime's own, as function and file:line, joined by " <- ".
func Of() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	var out []string
	past := false
	for len(out) < 4 {
		f, more := frames.Next()
		if past && !strings.HasPrefix(f.Function, "runtime.") {
			out = append(out, fmt.Sprintf("%s (%s:%d)", f.Function, filepath.Base(f.File), f.Line))
		}
		past = past || f.Function == "runtime.gopanic"
		if !more {
			break
		}
	}
	return strings.Join(out, " <- ")
}
