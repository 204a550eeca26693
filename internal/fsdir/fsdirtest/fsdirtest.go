// Package fsdirtest makes file writes fail on demand, for tests of code
// that must not lose a failed write.
package fsdirtest

import (
	"syscall"
	"testing"
)

// LimitFileSize makes every write that would take a regular file past n
// bytes fail (EFBIG, RLIMIT_FSIZE) until the test ends. The limit is the
// whole process's: a test that calls it must not run in parallel with
// others that write files. Go ignores the SIGXFSZ that comes with it.
func LimitFileSize(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	lim := old
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Errorf("restoring RLIMIT_FSIZE: %v", err)
		}
	})
}
