package control

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// runDir points Dir() at a fresh directory for this test.
func runDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "run") // not yet existing: Listen makes it
	t.Setenv(RunDirEnv, d)
	return d
}

func static(reply string) Handler {
	return func() ([]byte, error) { return []byte(reply), nil }
}

// noLeaks fails the test if goroutines started during it are still around
// once it ends; it waits for them with a deadline rather than a fixed sleep.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
	})
}

func TestDirAndSocketPath(t *testing.T) {
	t.Setenv(RunDirEnv, "")
	if Dir() != "/run/stunnel" || SocketPath("st0") != "/run/stunnel/st0.sock" {
		t.Errorf("default: Dir() = %q, SocketPath = %q", Dir(), SocketPath("st0"))
	}
	t.Setenv(RunDirEnv, "/tmp/x")
	if SocketPath("st0") != "/tmp/x/st0.sock" {
		t.Errorf("SocketPath with env = %q", SocketPath("st0"))
	}
}

func TestStatusRoundTrip(t *testing.T) {
	noLeaks(t)
	dir := runDir(t)
	s, err := Listen("st0", static(`{"name":"st0"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, req := range []string{"status\n", "status", " status \r\n"} {
		got, err := Query(SocketPath("st0"), req)
		if err != nil {
			t.Fatalf("Query(%q): %v", req, err)
		}
		if string(got) != `{"name":"st0"}` {
			t.Errorf("Query(%q) = %q", req, got)
		}
	}
	// Modes: directory 0700, socket 0600.
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run dir mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(SocketPath("st0")); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode: %v %v", fi.Mode(), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(SocketPath("st0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	noLeaks(t)
	runDir(t)
	boom := func() ([]byte, error) { return nil, errors.New("snapshot failed") }
	s, err := Listen("st0", boom)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := SocketPath("st0")
	if _, err := Query(path, "status"); err == nil || err.Error() != "control socket "+path+": snapshot failed" {
		t.Errorf("handler error came back as %v", err)
	}
	if _, err := Query(path, "reload"); err == nil || !strings.Contains(err.Error(), `unknown request "reload"`) {
		t.Errorf("unknown request: %v", err)
	}
	if _, err := Query(path, strings.Repeat("x", MaxRequest)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("client-side length check: %v", err)
	}
	// A raw client that sends an endless line gets an error and the
	// connection closed, not a server reading forever.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Write([]byte(strings.Repeat("y", 4*MaxRequest))) // may fail once the server closes
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(c)
	if !strings.Contains(string(reply), "request longer than 256 bytes") {
		t.Errorf("oversize request got %q", reply)
	}
}

func TestPanickingHandler(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s, err := Listen("st0", func() ([]byte, error) { panic("nil map") })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Query(SocketPath("st0"), "status"); err == nil || !strings.Contains(err.Error(), "internal error: nil map") {
		t.Errorf("panic became %v", err)
	}
	// And the server still answers.
	if _, err := Query(SocketPath("st0"), "status"); err == nil {
		t.Error("second query: want the same error")
	}
}

func TestInUseAndStale(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s, err := Listen("st0", static("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := SocketPath("st0")
	_, err = Listen("st0", static("{}"))
	want := "control socket " + path + " is in use: is another stunnel up for st0?"
	if err == nil || err.Error() != want {
		t.Errorf("second Listen: %v\nwant %s", err, want)
	}
	// The failed Listen must not have broken the live one.
	if _, err := Query(path, "status"); err != nil {
		t.Errorf("live server after refused Listen: %v", err)
	}

	// A stale socket (a crashed daemon's file, nobody accepting) is replaced.
	stale := SocketPath("st1")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Query(stale, "status"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query on stale socket: %v, want ErrNotRunning", err)
	}
	s1, err := Listen("st1", static(`"fresh"`))
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s1.Close()
	if got, err := Query(stale, "status"); err != nil || string(got) != `"fresh"` {
		t.Errorf("after replacing stale socket: %q %v", got, err)
	}

	// A regular file in the way is not ours to delete.
	if err := os.WriteFile(SocketPath("st2"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("st2", static("{}")); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}

	got, err := Sockets()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{path, stale}; !slices.Equal(got, want) {
		t.Errorf("Sockets() = %v, want %v", got, want)
	}
}

func TestInvalidNames(t *testing.T) {
	runDir(t)
	for _, n := range []string{"", "..", "a/b", "sixteen-chars-xx", "a b"} {
		if s, err := Listen(n, static("{}")); err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded", n)
		}
	}
}

func TestNotRunning(t *testing.T) {
	runDir(t)
	_, err := Query(SocketPath("st9"), "status")
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Query without a server: %v", err)
	}
	if !strings.Contains(err.Error(), SocketPath("st9")) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error should be one line naming the socket: %q", err)
	}
	if got, err := Sockets(); err != nil || len(got) != 0 {
		t.Errorf("Sockets() without a run dir = %v, %v", got, err)
	}
}

// TestCloseWithIdleAndBusyClients: Close must not wait out the per-connection
// deadline for a client that says nothing, must let a running handler finish,
// and must leave no goroutine behind.
func TestCloseWithIdleAndBusyClients(t *testing.T) {
	noLeaks(t)
	runDir(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	s, err := Listen("st0", func() ([]byte, error) {
		once.Do(func() { close(entered) })
		<-release
		return []byte("{}"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	queried := make(chan error, 1)
	go func() { _, err := Query(s.Path(), "status"); queried <- err }()
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// The idle client is cut off by Close (it sees EOF), long before the
	// 2 s per-connection deadline would have ended it.
	idle.SetReadDeadline(time.Now().Add(Timeout / 2))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle client: want EOF from Close, got %v", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was still running", err)
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	<-queried // its outcome does not matter: the connection was closed under it
	if _, err := Query(s.Path(), "status"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query after Close: %v, want ErrNotRunning", err)
	}
}

func TestConcurrentQueries(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s, err := Listen("st0", static(`{"ok":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := Query(s.Path(), "status"); err != nil || string(got) != `{"ok":true}` {
				errs <- errors.Join(err, errors.New(string(got)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
