package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
)

// FuzzParseRequest: whatever method, path and body a caller sends, parsing
// never panics, and what it accepts is a known command with an argument
// that obeys the command's rule, printable and bounded.
func FuzzParseRequest(f *testing.F) {
	for _, c := range Commands {
		f.Add(c.Method, c.Path, []byte(`{"arg":"site-b"}`))
		f.Add(c.Method, c.Path, []byte(``))
	}
	f.Add("POST", "/v1/rekey", []byte(`{"arg":"a\u0000"}`))
	f.Add("POST", "/v1/rekey", []byte(`{"arg":"x","role":"officer"}`))
	f.Add("POST", "/v1/rekey", []byte(`{"arg":"x"}{"arg":"y"}`))
	f.Add("GET", "/v1/../v1/status", []byte(`[]`))
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		cmd, arg, err := parseRequest(method, path, bytes.NewReader(body))
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status < 400 || re.status > 499 || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %T %q: want a one-line 4xx requestError", err, err)
			}
			return
		}
		known, ok := CommandByName(cmd.Name)
		if !ok || known.Path != path || known.Method != method {
			t.Fatalf("accepted %s %q as %+v", method, path, cmd)
		}
		if len(arg) > MaxArg || (cmd.Arg == argNone && arg != "") || (cmd.Arg == argRequired && arg == "") {
			t.Fatalf("argument %q breaks %s's rule", arg, cmd.Name)
		}
		for _, r := range arg {
			if !unicode.IsPrint(r) {
				t.Fatalf("unprintable %q accepted", r)
			}
		}
	})
}

// FuzzServeRawRequest: raw bytes on the socket, as net/http reads them,
// through the whole server: never a panic, never a handler run without the
// role, every reply well-formed.
func FuzzServeRawRequest(f *testing.F) {
	f.Add([]byte("POST /v1/rekey HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n{\"arg\":\"site-b\"}"))
	f.Add([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/tickets HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST /v1/tickets/retire HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"arg\r\n0\r\n\r\n"))
	s := &Server{groups: testGroups, audit: slog.New(slog.DiscardHandler)}
	ran := false
	h := allHandlers()
	h.Rekey = func(string) error { ran = true; return nil }
	h.TicketsRetire = func(string) ([]byte, error) { ran = true; return nil, nil }
	s.h = h
	reader := Creds{UID: 1001, GID: 5001, PID: 7}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before we see it
		}
		r = r.WithContext(context.WithValue(context.Background(), credsKey{}, reader))
		ran = false
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if ran {
			t.Fatalf("a read-role caller ran an operate or officer handler: %q", raw)
		}
		if w.Code != 200 && !strings.HasPrefix(w.Body.String(), `{"error":`) {
			t.Fatalf("status %d with body %q", w.Code, w.Body)
		}
	})
}
