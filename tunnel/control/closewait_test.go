package control

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestCloseWaitsForAHandlerPastTheBound: a handler still running when
// Close's bound (shutdownWait) runs out has its connection cut, and Close
// still returns only once the handler has returned. The daemon relies on
// it: after the control server's Close it saves the state file and zeroes
// the key that seals it, so a `state save` still running then would write
// its tickets-only file over the clean stop's, with a key being zeroed.
func TestCloseWaitsForAHandlerPastTheBound(t *testing.T) {
	noLeaks(t)
	runDir(t)
	defer func(d time.Duration) { shutdownWait = d }(shutdownWait)
	shutdownWait = 50 * time.Millisecond
	entered, release := make(chan struct{}), make(chan struct{})
	var handlerDone atomic.Bool
	s, err := Listen(Config{Name: "st0", Handlers: Handlers{
		Status: func() ([]byte, error) { return []byte(`{}`), nil },
		StateSave: func() error {
			close(entered)
			<-release
			handlerDone.Store(true)
			return nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	queried := make(chan error, 1)
	go func() { _, err := Query(s.Path(), "state save", ""); queried <- err }()
	<-entered
	closed := make(chan bool, 1) // whether the handler had returned when Close did
	go func() { s.Close(); closed <- handlerDone.Load() }()
	// The bound runs out and the connection is cut: the client sees it.
	select {
	case err := <-queried:
		if err == nil {
			t.Fatal("the request answered while its handler was blocked")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for Close to cut off the request past its bound")
	}
	// Close has nothing left to do but wait for the handler; one that
	// returns now returns without it (it does so at once).
	select {
	case <-closed:
		close(release)
		t.Fatal("Close returned while a handler was still running")
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	if !<-closed {
		t.Fatal("Close returned before the handler did")
	}
}
