// Package waitfor is the tests' one way to wait: on a condition, with a
// deadline, never by sleeping and hoping.
package waitfor

import (
	"testing"
	"time"
)

// Cond checks cond every poll until it holds, or fails t once timeout has
// passed, naming what it waited for.
func Cond(t testing.TB, timeout, poll time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(poll)
	}
}
