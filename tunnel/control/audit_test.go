package control

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"stunnel/internal/waitfor"
)

// A panic in a read handler (status, metrics) is no audited command, but
// it must still leave a line in the log: the caller got a 500, and the
// daemon's operator needs to know that, by whom, and where it panicked.
func TestPanicIsLogged(t *testing.T) {
	noLeaks(t)
	runDir(t)
	var audit, errs bytes.Buffer
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("metrics exploded") })
	s, err := Listen(Config{Name: "st0", Handlers: Handlers{
		Status:  func() ([]byte, error) { panic("nil map") },
		Metrics: boom,
	}, Audit: slog.New(slog.NewTextHandler(&syncWriter{w: &audit}, nil)),
		Log: slog.New(slog.NewTextHandler(&syncWriter{w: &errs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, cmd := range []string{"status", "metrics"} {
		if _, err := Query(SocketPath("st0"), cmd, ""); err == nil || !strings.Contains(err.Error(), "internal error") {
			t.Errorf("%s: panic became %v", cmd, err)
		}
	}
	a := audit.String()
	for _, want := range []string{`command=status arg="" outcome="failed: internal error: nil map"`,
		`command=metrics arg="" outcome="failed: internal error: metrics exploded"`} {
		if !strings.Contains(a, want) {
			t.Errorf("audit log lacks %q:\n%s", want, a)
		}
	}
	e := errs.String()
	if n := strings.Count(e, "level=ERROR"); n != 2 || !strings.Contains(e, "audit_test.go") {
		t.Errorf("want two ERROR lines naming where it panicked (audit_test.go), got:\n%s", e)
	}
}

// Requests that net/http refuses itself, before any handler runs, and
// requests cut off before they were read whole are malformed requests
// too: each is one audit line, as docs/CONFIGURATION.md promises for
// "every refused or malformed request of any kind".
func TestUnservedRequestsAreAudited(t *testing.T) {
	noLeaks(t)
	runDir(t)
	var audit bytes.Buffer
	aw := &syncWriter{w: &audit}
	s, err := Listen(Config{Name: "st0", Handlers: statusOnly("{}"), Audit: slog.New(slog.NewTextHandler(aw, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := SocketPath("st0")
	for _, c := range []struct {
		req    string
		status int
		line   string
	}{
		{"GARBAGE\r\n\r\n", 400, `outcome="refused: malformed request: 400 Bad Request"`},
		{"GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n", 400, `outcome="refused: malformed request: 400 Bad Request: missing required Host header"`},
		{"GET /v1/status HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431, `outcome="refused: malformed request: 431 Request Header Fields Too Large"`},
		{"POST /v1/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, `outcome="refused: malformed request: 501 Not Implemented"`},
		{"GET /v1/status HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417, `outcome="refused: malformed request: 417 Expectation Failed"`},
	} {
		before := strings.Count(aw.String(), "msg=audit")
		if status, _ := rawRequest(t, path, c.req); status != c.status {
			t.Errorf("%.40q: status %d, want %d", c.req, status, c.status)
		}
		a := aw.String()
		if strings.Count(a, "msg=audit") != before+1 || !strings.Contains(a, c.line) {
			t.Errorf("%.40q: want one more audit line with %s, log:\n%s", c.req, c.line, a)
		}
	}
	// Half a request, then the caller stalls: after Timeout net/http
	// hangs up without a reply; one line all the same. (A caller that
	// hangs up mid-request gets a 400, above.)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /v1/status HTTP/1.1\r\n")
	want := `command=unknown arg="" outcome="refused: incomplete request: the connection closed or timed out before the request was read whole"`
	waitfor.Cond(t, 10*time.Second, 5*time.Millisecond, "the audit line of a cut-off request", func() bool {
		return strings.Contains(aw.String(), want)
	})
	if !strings.Contains(aw.String(), "uid=") || strings.Contains(aw.String(), "uid=unknown") {
		t.Errorf("audit lines do not name the caller:\n%s", aw.String())
	}
	// A connection that sends nothing is no request: no line.
	n := strings.Count(aw.String(), "msg=audit")
	c, err = net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := Query(path, "status", ""); err != nil { // served after the silent one was closed
		t.Fatal(err)
	}
	s.Close()
	if got := strings.Count(aw.String(), "msg=audit"); got != n {
		t.Errorf("%d audit lines after a silent connection and a status, want %d:\n%s", got, n, aw.String())
	}
}
