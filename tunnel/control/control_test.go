package control

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// runDir points Dir() at a fresh directory for this test.
func runDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "run") // not yet existing: Listen makes it
	t.Setenv(RunDirEnv, d)
	return d
}

func statusOnly(reply string) Handlers {
	return Handlers{Status: func() ([]byte, error) { return []byte(reply), nil }}
}

func listen(t *testing.T, name string, h Handlers) *Server {
	t.Helper()
	s, err := Listen(Config{Name: name, Handlers: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// noLeaks fails the test if goroutines started during it are still around
// once it ends; it waits for them with a deadline rather than a fixed sleep.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func TestDirAndSocketPath(t *testing.T) {
	t.Setenv(RunDirEnv, "")
	if Dir() != "/run/stunnel" || SocketPath("st0") != "/run/stunnel/st0.sock" {
		t.Errorf("default: Dir() = %q, SocketPath = %q", Dir(), SocketPath("st0"))
	}
	t.Setenv(RunDirEnv, "/tmp/x")
	if SocketPath("st0") != "/tmp/x/st0.sock" || roleSocketPath(SocketPath("st0"), RoleOperate) != "/tmp/x/st0:operate.sock" {
		t.Errorf("paths with env: %q %q", SocketPath("st0"), roleSocketPath(SocketPath("st0"), RoleOperate))
	}
}

func TestStatusRoundTrip(t *testing.T) {
	noLeaks(t)
	dir := runDir(t)
	s, err := Listen(Config{Name: "st0", Handlers: statusOnly(`{"name":"st0"}`)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Query(SocketPath("st0"), "status", "")
	if err != nil || string(got) != "{\"name\":\"st0\"}\n" {
		t.Fatalf("Query = %q, %v", got, err)
	}
	// Modes: directory 0755 (callers in the role groups must reach the
	// sockets), socket 0600 ours when no group is configured, and no role
	// sockets then.
	if fi, err := os.Lstat(dir); err != nil || fi.Mode().Perm() != 0o755 || !fi.IsDir() {
		t.Errorf("run dir mode: %v %v", fi.Mode(), err)
	}
	assertSocket(t, SocketPath("st0"), 0o600, uint32(os.Getegid()))
	if got := s.Paths(); !slices.Equal(got, []string{SocketPath("st0")}) {
		t.Errorf("sockets without groups: %v", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("run dir holds %d entries, want only the socket (staging dir left behind?)", len(ents))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(SocketPath("st0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func assertSocket(t *testing.T, path string, mode os.FileMode, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != mode || st.Uid != uint32(os.Geteuid()) || st.Gid != gid {
		t.Errorf("%s: mode %v uid %d gid %d; want socket %04o uid %d gid %d", path, fi.Mode(), st.Uid, st.Gid, mode, os.Geteuid(), gid)
	}
}

func TestHandlerOutcomes(t *testing.T) {
	noLeaks(t)
	runDir(t)
	var got []string
	var mu sync.Mutex
	record := func(what string) { mu.Lock(); got = append(got, what); mu.Unlock() }
	listen(t, "st0", Handlers{
		Status:     func() ([]byte, error) { return nil, errors.New("snapshot failed") },
		Reload:     func() (string, error) { record("reload"); return "/etc/stunnel/st0.toml", nil },
		Rekey:      func(p string) error { record("rekey " + p); return nil },
		Disconnect: func(p string) error { return errors.Join(errors.New(`peer "x": no such peer`), ErrNotFound) },
	})
	path := SocketPath("st0")
	cases := []struct {
		cmd, arg string
		status   int
		msg      string
	}{
		{"status", "", 500, "snapshot failed"},
		{"reload", "", 200, ""},
		{"rekey", "site-b", 200, ""},
		{"disconnect", "x", 404, `peer "x": no such peer`},
		{"state save", "", 501, "state save: not available in this build yet"},
		{"tickets list", "", 501, "tickets list: not available in this build yet"},
		{"tickets add", "", 501, "tickets add: not available in this build yet"},
		{"tickets retire", "k1", 501, "tickets retire: not available in this build yet"},
		{"metrics", "", 501, "metrics: not available in this build yet"},
	}
	for _, c := range cases {
		reply, err := Query(path, c.cmd, c.arg)
		var re *RemoteError
		switch {
		case c.status == 200 && err != nil:
			t.Errorf("%s: %v", c.cmd, err)
		case c.cmd == "reload" && string(reply) != `{"ok":true,"file":"/etc/stunnel/st0.toml"}`+"\n":
			t.Errorf("reload replied %q; want ok and the file it read", reply)
		case c.status != 200 && (!errors.As(err, &re) || re.Status != c.status || !strings.HasPrefix(re.Msg, c.msg)):
			t.Errorf("%s: got %v (%#v), want %d %q", c.cmd, err, re, c.status, c.msg)
		}
	}
	if want := []string{"reload", "rekey site-b"}; !slices.Equal(got, want) {
		t.Errorf("handlers ran: %v, want %v", got, want)
	}
}

// rawRequest sends bytes as they are and returns the status line and body.
func rawRequest(t *testing.T, path, req string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		t.Fatalf("reading reply to %q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBadRequests(t *testing.T) {
	noLeaks(t)
	runDir(t)
	var audit bytes.Buffer
	s, err := Listen(Config{Name: "st0", Handlers: Handlers{
		Status: func() ([]byte, error) { return []byte("{}"), nil },
		Rekey:  func(string) error { t.Error("rekey ran on a bad request"); return nil },
	}, Audit: slog.New(slog.NewTextHandler(&syncWriter{w: &audit}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := SocketPath("st0")
	post := func(p, body string) string {
		return "POST " + p + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	}
	for _, c := range []struct {
		req    string
		status int
		msg    string
	}{
		{"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, `unknown request \"/v1/nothing\"`},
		{"GET /v1/rekey HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, "rekey needs method POST"},
		{post("/v1/rekey", `{"arg":`), 400, "malformed request body"},
		{post("/v1/rekey", `{"arg":"a","role":"officer"}`), 400, `unknown field \"role\"`},
		{post("/v1/rekey", `{}`), 400, "rekey needs a peer ID"},
		{post("/v1/rekey", `{"arg":"a\u0000b"}`), 400, "unprintable"},
		{post("/v1/rekey", `{"arg":"`+strings.Repeat("x", 300)+`"}`), 400, "longer than 255"},
		{post("/v1/rekey", `{"arg":"`+strings.Repeat("x", 2000)+`"}`), 400, "request longer than 1024 bytes"},
		{post("/v1/reload", `{"arg":"x"}`), 400, "reload takes no argument"},
		{post("/v1/rekey", `{"arg":"a"} {"arg":"b"}`), 400, "more than one JSON value"},
		// tickets add's argument is key material: no character of it is echoed.
		{post("/v1/tickets/add", `{"arg":"k3y\u0007"}`), 400, "tickets add: argument holds an unprintable character"},
		{post("/v1/tickets/add", `{"arg":"k3y\q"}`), 400, "malformed request body (not shown: it may hold key material)"},
	} {
		status, body := rawRequest(t, path, c.req)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%.60q: %d %s; want %d containing %q", c.req, status, body, c.status, c.msg)
		}
	}
	// Every malformed request is audited as refused.
	if n := strings.Count(audit.String(), "outcome=\"refused: "); n != 12 {
		t.Errorf("%d refused audit lines, want 12:\n%s", n, audit.String())
	}
	if strings.Contains(audit.String(), "k3y") || strings.Contains(audit.String(), `\a`) || strings.Contains(audit.String(), "'q'") {
		t.Errorf("a tickets add argument reached the audit log:\n%s", audit.String())
	}
}

func TestPanickingHandler(t *testing.T) {
	noLeaks(t)
	runDir(t)
	listen(t, "st0", Handlers{Status: func() ([]byte, error) { panic("nil map") }})
	for range 2 { // and the server still answers
		if _, err := Query(SocketPath("st0"), "status", ""); err == nil || err.Error() != "internal error: nil map" {
			t.Errorf("panic became %v", err)
		}
	}
}

func TestInUseStaleAndPlanted(t *testing.T) {
	noLeaks(t)
	dir := runDir(t)
	listen(t, "st0", statusOnly("{}"))
	path := SocketPath("st0")
	_, err := Listen(Config{Name: "st0", Handlers: statusOnly("{}")})
	want := "control socket " + path + " is in use: is another stunnel up for st0?"
	if err == nil || err.Error() != want {
		t.Errorf("second Listen: %v\nwant %s", err, want)
	}
	if _, err := Query(path, "status", ""); err != nil {
		t.Errorf("live server after refused Listen: %v", err)
	}
	// `up` asks first, before it touches anything, and gets the same line.
	if err := CheckFree("st0"); err == nil || err.Error() != want {
		t.Errorf("CheckFree of a live socket: %v\nwant %s", err, want)
	}
	if err := CheckFree("st9"); err != nil {
		t.Errorf("CheckFree with no socket: %v", err)
	}

	// A stale socket (a crashed daemon's file, nobody accepting) is replaced.
	stale := SocketPath("st1")
	deadSocket(t, stale)
	if _, err := Query(stale, "status", ""); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query on stale socket: %v, want ErrNotRunning", err)
	}
	listen(t, "st1", statusOnly(`"fresh"`))
	if got, err := Query(stale, "status", ""); err != nil || string(got) != "\"fresh\"\n" {
		t.Errorf("after replacing stale socket: %q %v", got, err)
	}

	// A regular file in the way is not ours to delete.
	if err := os.WriteFile(SocketPath("st2"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Config{Name: "st2", Handlers: statusOnly("{}")}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}

	// A symlink planted at the socket path, to a dead socket and to a
	// file, is not followed: not removed, its target untouched.
	target := filepath.Join(t.TempDir(), "target.sock")
	deadSocket(t, target)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string]string{"st3": target, "st4": victim} {
		if err := os.Symlink(to, SocketPath(name)); err != nil {
			t.Fatal(err)
		}
		_, err := Listen(Config{Name: name, Handlers: statusOnly("{}")})
		if err == nil || !strings.Contains(err.Error(), "is a symlink, not a socket: not following it") {
			t.Errorf("Listen over a symlink to %s: %v", to, err)
		}
		if fi, err := os.Lstat(SocketPath(name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("planted symlink %s was touched: %v %v", name, fi, err)
		}
	}
	if fi, err := os.Lstat(target); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("symlink target socket was touched: %v", err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("symlink target file was touched: %q %v", b, err)
	}

	got, err := Sockets()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{path, stale}; !slices.Equal(got, want) {
		t.Errorf("Sockets() = %v, want %v", got, want)
	}
	if ents, _ := os.ReadDir(dir); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".stage") }) {
		t.Error("a staging directory was left behind")
	}
}

// deadSocket leaves a socket file nobody listens on, as a crash does.
func deadSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func TestUnsafeRunDir(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777) // past the umask
	t.Setenv(RunDirEnv, open)
	if _, err := Listen(Config{Name: "st0", Handlers: statusOnly("{}")}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable run dir: %v", err)
	}
	link := filepath.Join(base, "link")
	os.Symlink(base, link)
	t.Setenv(RunDirEnv, link)
	if _, err := Listen(Config{Name: "st0", Handlers: statusOnly("{}")}); err == nil || !strings.Contains(err.Error(), "is not a directory (a symlink?)") {
		t.Errorf("symlinked run dir: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	runDir(t)
	for _, n := range []string{"", "..", "a/b", "sixteen-chars-xx", "a b", "st0:operate", ".hidden"} {
		if s, err := Listen(Config{Name: n, Handlers: statusOnly("{}")}); err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded", n)
		}
	}
}

func TestNotRunning(t *testing.T) {
	runDir(t)
	_, err := Query(SocketPath("st9"), "status", "")
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

// TestCloseWaitsForARunningRequest: Close lets a running handler finish,
// cuts idle clients off, and leaves no goroutine behind.
func TestCloseWaitsForARunningRequest(t *testing.T) {
	noLeaks(t)
	runDir(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	s, err := Listen(Config{Name: "st0", Handlers: Handlers{Status: func() ([]byte, error) {
		once.Do(func() { close(entered) })
		<-release
		return []byte(`"late"`), nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	queried := make(chan error, 1)
	go func() {
		got, err := Query(s.Path(), "status", "")
		if err == nil && string(got) != "\"late\"\n" {
			err = errors.New("reply " + string(got))
		}
		queried <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close stops listening at once... (probed by connecting only: a status
	// request that got in before the listener closed would wait for the
	// blocked handler, as long as a reply may take)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the socket still answers after Close began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was still running", err)
	default:
	}
	// ...and lets the running request finish with its reply.
	close(release)
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-queried; err != nil {
		t.Errorf("the request running during Close: %v", err)
	}
}

func TestConcurrentQueries(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s := listen(t, "st0", statusOnly(`{"ok":true}`))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := Query(s.Path(), "status", ""); err != nil || string(got) != "{\"ok\":true}\n" {
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

// TestSlowReadReply: status and metrics of a big tunnel take the daemon a
// while to make (about 1 to 2 s for 10,000 peers on a busy 2-core host, the
// scale docs/CONFIGURATION.md measures), so a GET's reply is waited for as
// long as a POST's, not only for Timeout. The wait is still bounded: a
// reply slower than ReplyTimeout, or longer than MaxReply, is given up with
// an error that says which (both lowered here, to spare a 30 s wait and a
// 64 MiB reply).
func TestSlowReadReply(t *testing.T) {
	noLeaks(t)
	runDir(t)
	release := make(chan struct{})
	var size atomic.Int64 // of the reply to make; 0: a slow "big"
	s := listen(t, "st0", Handlers{Status: func() ([]byte, error) {
		if n := size.Load(); n > 0 {
			return bytes.Repeat([]byte("x"), int(n)), nil
		}
		select {
		case <-release: // the refusal below: held until the client gave up
		case <-time.After(Timeout + 500*time.Millisecond):
		}
		return []byte(`"big"`), nil
	}})
	if got, err := Query(s.Path(), "status", ""); err != nil || string(got) != "\"big\"\n" {
		t.Errorf("a status that takes %v to make: %q %v", Timeout+500*time.Millisecond, got, err)
	}

	defer func(d time.Duration, n int) { replyTimeout, maxReply = d, n }(replyTimeout, maxReply)
	replyTimeout = 300 * time.Millisecond
	start := time.Now()
	got, err := Query(s.Path(), "status", "")
	took := time.Since(start)
	close(release)
	if err == nil || !strings.Contains(err.Error(), "reading reply: i/o timeout") {
		t.Errorf("a reply slower than the reply timeout: %q %v, want a reading reply: i/o timeout error", got, err)
	}
	if took > replyTimeout+Timeout {
		t.Errorf("gave up after %v, the reply timeout is %v", took, replyTimeout)
	}

	replyTimeout, maxReply = ReplyTimeout, 1000
	size.Store(int64(maxReply) - 1) // the server adds a newline
	if got, err := Query(s.Path(), "status", ""); err != nil || len(got) != maxReply {
		t.Errorf("a reply of exactly %d bytes: %d bytes, %v", maxReply, len(got), err)
	}
	size.Store(int64(maxReply))
	if got, err := Query(s.Path(), "status", ""); err == nil || !strings.Contains(err.Error(), "reply longer than 1000 bytes") {
		t.Errorf("a reply of %d bytes: %d bytes, %v; want a reply longer than 1000 bytes error", maxReply+1, len(got), err)
	}
}
