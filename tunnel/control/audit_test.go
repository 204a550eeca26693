package control

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
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
