package control

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
	"stunnel/internal/waitfor"

	"golang.org/x/sys/unix"
)

// testCallers are the callers the limit tests play, with testGroups.
var testCallers = map[string]Creds{
	"reader":    {PID: 11, UID: 1001, GID: 5001},
	"reader2":   {PID: 16, UID: 1006, GID: 5001},
	"reader3":   {PID: 17, UID: 1007, GID: 5001},
	"nobody":    {PID: 15, UID: 1005, GID: 100},
	"operator":  {PID: 12, UID: 1002, GID: 100, Groups: []uint32{5002}},
	"operator2": {PID: 18, UID: 1008, GID: 100, Groups: []uint32{5002}},
	"officer":   {PID: 13, UID: 1003, GID: 100, Groups: []uint32{5003}},
	"root":      {PID: 1, UID: 0, GID: 0},
}

// fakeCreds is Config.credsOf for tests: a client socket bound to the
// abstract name "@...-WHO" (dialAs) is testCallers[WHO]; an unnamed one
// (Query's) is root.
func fakeCreds(uc *net.UnixConn) (Creds, error) {
	a, _ := uc.RemoteAddr().(*net.UnixAddr)
	if a == nil || a.Name == "" || a.Name == "@" { // unnamed: Go shows an empty abstract name
		return testCallers["root"], nil
	}
	who := a.Name[strings.LastIndexByte(a.Name, '-')+1:]
	if who == "unknown" {
		return Creds{}, errors.New("SO_PEERGROUPS: protocol not available")
	}
	cr, ok := testCallers[who]
	if !ok {
		return Creds{}, fmt.Errorf("test: no caller %q", who)
	}
	return cr, nil
}

var dialSeq atomic.Int64

// dialAs connects to path as the test caller who (see fakeCreds).
func dialAs(t *testing.T, path, who string) *net.UnixConn {
	t.Helper()
	laddr := &net.UnixAddr{Name: fmt.Sprintf("@stunnel-ctltest-%d-%d-%s", os.Getpid(), dialSeq.Add(1), who), Net: "unix"}
	c, err := net.DialUnix("unix", laddr, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("connecting as %s: %v", who, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// send writes the request for cmd, with an argument if it needs one.
func send(t *testing.T, c net.Conn, cmdName string) {
	t.Helper()
	if err := trySend(c, cmdName); err != nil {
		t.Fatalf("sending %s: %v", cmdName, err)
	}
}

func trySend(c net.Conn, cmdName string) error {
	cmd, _ := CommandByName(cmdName)
	req := cmd.Method + " " + cmd.Path + " HTTP/1.1\r\nHost: stunnel\r\nConnection: close\r\n"
	if cmd.Method == http.MethodPost {
		body := `{"arg":""}`
		if cmd.Arg == argRequired {
			body = `{"arg":"x"}`
		}
		req += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	} else {
		req += "\r\n"
	}
	_, err := io.WriteString(c, req)
	return err
}

// reply reads one reply from c.
func reply(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// exchangeAs runs cmdName as who on a fresh connection.
func exchangeAs(t *testing.T, path, who, cmdName string) (int, string) {
	t.Helper()
	c := dialAs(t, path, who)
	defer c.Close()
	send(t, c, cmdName)
	return reply(t, c)
}

// busy is the 503 reply of a refused connection.
func busy(open int, tr tier) string {
	return fmt.Sprintf("control socket busy: %d connections open, %s may hold %d; try again", open, tr, tr.limit())
}

func TestTierOf(t *testing.T) {
	for who, want := range map[string]tier{"reader": tierRead, "nobody": tierRead, "operator": tierRole, "officer": tierRole, "root": tierRoot} {
		if got := tierOf(testGroups, testCallers[who], nil); got != want {
			t.Errorf("%s: tier %v, want %v", who, got, want)
		}
	}
	if got := tierOf(testGroups, Creds{}, errors.New("no creds")); got != tierRead {
		t.Errorf("unknown credentials (which read as uid 0): tier %v, want the lowest", got)
	}
	if tierRead.limit() != 48 || tierRole.limit() != 56 || tierRoot.limit() != MaxConns {
		t.Errorf("limits %d %d %d", tierRead.limit(), tierRole.limit(), tierRoot.limit())
	}
}

// limitServer is a Server whose metrics and tickets-list handlers hold
// each request until release, so that a test can fill its slots with
// callers of its choice (fakeCreds) and see who else gets in.
type limitServer struct {
	t       *testing.T
	s       *Server
	path    string
	clock   *fakeclock.Clock
	log     *syncWriter
	held    atomic.Int32    // requests that entered a holding handler since the last releaseAll
	holders []*net.UnixConn // the held requests' connections; the test's goroutine only

	mu       sync.Mutex
	release  chan struct{} // closed to let the held requests go; guarded by mu
	released bool          // release is closed; guarded by mu
}

func newLimitServer(t *testing.T) *limitServer {
	l := &limitServer{t: t, clock: fakeclock.New(time.Unix(1_000_000_000, 0)), log: &syncWriter{w: new(bytes.Buffer)},
		release: make(chan struct{})}
	hold := func() {
		l.mu.Lock()
		release := l.release
		l.mu.Unlock()
		l.held.Add(1)
		<-release
	}
	h := allHandlers()
	h.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hold(); w.Write([]byte("m 1\n")) })
	h.TicketsList = func() ([]byte, error) { hold(); return []byte(`[]`), nil }
	s, err := Listen(Config{Name: "st0", Groups: testGroups, Handlers: h, credsOf: fakeCreds, now: l.clock.Now,
		Log: slog.New(slog.NewTextHandler(l.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l.s, l.path = s, s.Path()
	t.Cleanup(func() { s.Close() })
	t.Cleanup(l.unblock) // before Close: it waits for the held requests
	return l
}

func (l *limitServer) unblock() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.released {
		close(l.release)
		l.released = true
	}
}

// holdAs makes n callers who sit in a handler, each holding a slot.
func (l *limitServer) holdAs(who string, n int) {
	l.t.Helper()
	cmd := "metrics"
	if who == "officer" {
		cmd = "tickets list" // an officer may not read metrics
	}
	for range n {
		c := dialAs(l.t, l.path, who)
		send(l.t, c, cmd)
		l.holders = append(l.holders, c)
	}
	want := int32(len(l.holders))
	waitfor.Cond(l.t, 5*time.Second, time.Millisecond, fmt.Sprintf("%d requests held", want), func() bool { return l.held.Load() == want })
}

// refused checks that who is refused at once with a 503 saying msg.
func (l *limitServer) refused(who, cmd, msg string) {
	l.t.Helper()
	c := dialAs(l.t, l.path, who)
	trySend(c, cmd) // may fail (the daemon closed first): the reply is there anyway
	if code, body := reply(l.t, c); code != http.StatusServiceUnavailable || !strings.Contains(body, msg) {
		l.t.Errorf("%s: %d %s, want 503 %q", who, code, body, msg)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		l.t.Errorf("%s: a refused connection stays open (read %d bytes)", who, n)
	}
}

// served checks that who gets cmd served, and waits for its slot back.
func (l *limitServer) served(who, cmd string) {
	l.t.Helper()
	if code, body := exchangeAs(l.t, l.path, who, cmd); code != http.StatusOK {
		l.t.Errorf("%s %s: %d %s, want it served", who, cmd, code, body)
	}
	// The server gives the slot back just after the reply.
	waitfor.Cond(l.t, 5*time.Second, time.Millisecond, "the slot back", func() bool { open, _, _ := l.s.lim.count(); return open == len(l.holders) })
}

// releaseAll lets the held requests finish and waits for every slot back;
// requests held after it are held until the next releaseAll or the end.
func (l *limitServer) releaseAll() {
	l.t.Helper()
	l.unblock()
	for _, c := range l.holders {
		if code, body := reply(l.t, c); code != http.StatusOK {
			l.t.Errorf("a held request: %d %s", code, body)
		}
		c.Close()
	}
	l.holders = nil
	waitfor.Cond(l.t, 5*time.Second, time.Millisecond, "every slot back", func() bool { open, _, _ := l.s.lim.count(); return open == 0 })
	// Every held handler has returned: later ones hold again.
	l.held.Store(0)
	l.mu.Lock()
	l.release, l.released = make(chan struct{}), false
	l.mu.Unlock()
}

// TestConnLimit: connections held by read-only callers stop at their limit,
// and more of them are refused at once with a 503 and counted, while
// operators, officers and root still get in; operators and officers stop at
// theirs and root still gets in; root stops at MaxConns. The refusals make
// one warning line per interval. Once the clients are done every slot is
// back, and the server's goroutines end. (Three read-only uids fill their
// tier: one may hold only UserShare, TestUIDShare.)
func TestConnLimit(t *testing.T) {
	noLeaks(t)
	runDir(t)
	l := newLimitServer(t)
	s, path := l.s, l.path
	refused := func(who, cmd string, open int, tr tier) { t.Helper(); l.refused(who, cmd, busy(open, tr)) }

	l.holdAs("reader", UserShare)
	l.holdAs("reader2", UserShare)
	l.holdAs("reader3", UserShare) // the read-only callers' 48
	refused("nobody", "status", 48, tierRead)
	refused("unknown", "status", 48, tierRead) // credentials unknown: the lowest tier
	var wg sync.WaitGroup
	const flood = 100
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("@stunnel-ctltest-%d-%d-nobody", os.Getpid(), dialSeq.Add(1)), Net: "unix"},
				&net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if b, err := io.ReadAll(c); err != nil || !bytes.HasPrefix(b, []byte("HTTP/1.1 503 ")) {
				t.Errorf("a refused connection: %q %v", b, err)
			}
		}()
	}
	wg.Wait() // every one read to EOF: each was closed at once
	l.served("operator", "reload")
	l.served("officer", "tickets retire")
	l.served("root", "reload")

	l.holdAs("operator", 4)
	l.holdAs("officer", 4) // operate and officer callers' 56
	refused("operator", "reload", 56, tierRole)
	refused("officer", "tickets retire", 56, tierRole)
	refused("nobody", "status", 56, tierRead) // says its own limit, not the count
	l.served("root", "reload")

	l.holdAs("root", 8)
	refused("root", "reload", 64, tierRoot)
	_, err := Query(path, "status", "") // the real client (root, for fakeCreds)
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable || re.Msg != busy(64, tierRoot) {
		t.Errorf("Query at the limit: %v, want %q", err, busy(64, tierRoot))
	}
	wantRefused := uint64(2 + flood + 3 + 1 + 1)
	if open, limit, share := s.lim.count(); open != MaxConns || limit != wantRefused || share != 0 {
		t.Errorf("%d open, %d+%d refused; want %d, %d+0", open, limit, share, MaxConns, wantRefused)
	}
	if limit, share := s.Refused(); limit != wantRefused || share != 0 {
		t.Errorf("Refused() = %d, %d, want %d, 0", limit, share, wantRefused)
	}

	// One line for all of them within the interval; the next line, an
	// interval later, counts what the first did not.
	lines := strings.Split(strings.TrimSpace(l.log.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `level=WARN msg="control socket busy: refusing connections" refused=1 refused_total=1 open=48 limit=48 tier="read-only callers" last_uid=1005 last_pid=15 last_uid_open=0 last_reason=tier_limit`) {
		t.Errorf("log after %d refusals in one interval:\n%s", wantRefused, l.log.String())
	}
	l.clock.Advance(refusedLogInterval)
	refused("root", "reload", 64, tierRoot)
	lines = strings.Split(strings.TrimSpace(l.log.String()), "\n")
	if want := fmt.Sprintf("refused=%d refused_total=%d open=64 limit=64 tier=root last_uid=0 last_pid=1 last_uid_open=8 last_reason=tier_limit", wantRefused, wantRefused+1); len(lines) != 2 || !strings.Contains(lines[1], want) {
		t.Errorf("log an interval later, want a second line with %q:\n%s", want, l.log.String())
	}

	// Every slot comes back once the clients are done.
	l.releaseAll()
	l.served("reader", "status")
}

// TestSilentClientLosesItsSlot: a client that connects and sends nothing,
// or half a request, is cut off after Timeout and its slot comes back.
func TestSilentClientLosesItsSlot(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s, err := Listen(Config{Name: "st0", Groups: testGroups, Handlers: allHandlers(), credsOf: fakeCreds})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	silent := dialAs(t, s.Path(), "reader")
	half := dialAs(t, s.Path(), "reader")
	io.WriteString(half, "GET /v1/status HTTP/1.1\r\nHost: stunnel\r\n")
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "two connections admitted", func() bool { open, _, _ := s.lim.count(); return open == 2 })
	start := time.Now()
	for _, c := range []*net.UnixConn{silent, half} {
		c.SetReadDeadline(start.Add(Timeout + 3*time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("the server did not close a silent connection: %v", err)
		}
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "both slots back", func() bool { open, _, _ := s.lim.count(); return open == 0 })
}

// TestOneRequestPerConnection: the server closes a connection after one
// reply even if the client asks to keep it: with keep-alive, a request now
// and then would hold the connection forever.
func TestOneRequestPerConnection(t *testing.T) {
	noLeaks(t)
	runDir(t)
	s := listen(t, "st0", statusOnly(`"up"`))
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const req = "GET /v1/status HTTP/1.1\r\nHost: stunnel\r\n\r\n" // no "Connection: close"
	io.WriteString(c, req)
	br := bufioReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Error("the reply does not say Connection: close")
	}
	io.WriteString(c, req) // may fail: the server has closed
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a second request on one connection was answered: %s", resp.Status)
	}
}

// TestCloseWithManyConnections: Close does not wait for connections that
// sent nothing (the ReadHeaderTimeout would end them only after Timeout):
// the limiter's shut, which Close runs before Shutdown, has closed them and
// given their slots back by the time it returns, and leaves a request under
// way to finish. Checked by the slots, not by how long Close takes: a
// wall-clock bound fails on a loaded machine (Shutdown polls its
// connections at growing intervals, up to 500 ms).
func TestCloseWithManyConnections(t *testing.T) {
	noLeaks(t)
	runDir(t)
	entered, release := make(chan struct{}), make(chan struct{})
	h := allHandlers()
	h.Status = func() ([]byte, error) { close(entered); <-release; return []byte(`"up"`), nil }
	s, err := Listen(Config{Name: "st0", Groups: testGroups, Handlers: h, credsOf: fakeCreds})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // before Close, also when the test fails
	busy := dialAs(t, s.Path(), "reader")
	send(t, busy, "status")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the status request to reach its handler")
	}
	var conns []*net.UnixConn
	for i := range 40 { // from three uids: one may hold only UserShare
		conns = append(conns, dialAs(t, s.Path(), []string{"reader", "reader2", "reader3"}[i%3]))
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "41 connections admitted", func() bool { open, _, _ := s.lim.count(); return open == 41 })
	s.lim.shut()
	if open, _, _ := s.lim.count(); open != 1 {
		t.Fatalf("%d connections open once shut returned, want 1 (the request under way): the silent ones were left to the header timeout", open)
	}
	for _, c := range conns {
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("a silent connection after shut: %v", err)
		}
	}
	unblock()
	if code, body := reply(t, busy); code != http.StatusOK {
		t.Errorf("the request under way at shut: %d %s, want it finished", code, body)
	}
	s.Close()
	if open, _, _ := s.lim.count(); open != 0 {
		t.Errorf("%d connections open after Close", open)
	}
}

// TestClientReadsBusyReply: a refused connection is closed before the
// client sends its request, so sending fails; the client still reads the
// daemon's reply and says "busy", not "broken pipe".
func TestClientReadsBusyReply(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c.(*net.UnixConn)
	}
	refuse(conns[0], busy(64, tierRoot))
	status, _ := CommandByName("status")
	_, err = exchange(conns[1], "/run/stunnel/st0.sock", status, "")
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable || re.Msg != busy(64, tierRoot) {
		t.Errorf("a refused connection: %v, want %q", err, busy(64, tierRoot))
	}
}
