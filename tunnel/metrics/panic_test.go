package metrics

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"stunnel/tunnel"
)

// A panic while collecting (in the status snapshot, or in a metric made
// from it) is recovered by the Prometheus registry, which runs collectors
// on goroutines of its own, so neither the control socket's recover nor
// net/http's sees it. It must still leave a line in the daemon's log, fail
// the scrape whole (never a 200 with part of the series), and send the
// scraper no stack trace.
func TestCollectPanic(t *testing.T) {
	for _, c := range []struct {
		name   string
		status func() tunnel.Status
		panic  string
	}{
		{"status", func() tunnel.Status { panic("status exploded") }, "status exploded"},
		// A label that is not UTF-8: MustNewConstMetric panics after the
		// interface's own series were sent.
		{"label", func() tunnel.Status {
			return tunnel.Status{Name: "st0", Peers: []tunnel.PeerStatus{{ID: "site-b"}, {ID: "bad\xff"}}}
		}, "label"},
	} {
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, nil))
		srv := httptest.NewServer(Handler(NewCollector(c.status), log))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		body := string(b)
		if resp.StatusCode != http.StatusInternalServerError || strings.Contains(body, "# TYPE") {
			t.Errorf("%s: scrape answered %d with\n%s\nwant a 500 and no series", c.name, resp.StatusCode, body)
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, "stack") || strings.Contains(body, ".go:") && strings.Contains(body, "+0x") {
			t.Errorf("%s: the scrape's reply carries a stack trace:\n%s", c.name, body)
		}
		l := logged.String()
		if strings.Count(l, "level=ERROR") != 1 || !strings.Contains(l, c.panic) || !strings.Contains(l, "panic_test.go") && c.name == "status" {
			t.Errorf("%s: want one ERROR line with the panic and where it was raised, got:\n%s", c.name, l)
		}
		if strings.Contains(l, "goroutine ") || strings.Contains(l, "+0x") {
			t.Errorf("%s: the log line carries a stack trace:\n%s", c.name, l)
		}
	}
}
