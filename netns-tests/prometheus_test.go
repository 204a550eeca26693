package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/netns"
)

const (
	metricsAddr = "127.0.0.1:9586" // the daemon's, in host a's namespace
	promAddr    = "127.0.0.1:9090" // Prometheus's, in the same namespace
)

// nsHTTPClient dials from inside ns: each connection's socket is made on a
// thread switched into the namespace, and keeps living there.
func nsHTTPClient(ns string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := netns.Do(ns, func() error {
					var err error
					c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// startPrometheus runs the Debian prometheus binary in ns, scraping the
// daemon's /metrics every second, with its own temporary storage.
func startPrometheus(t *testing.T, l *lab, ns string) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not installed (apt-get install prometheus; .ci/run does): %v", err)
	}
	dir := filepath.Join(l.dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: stunnel
    static_configs:
      - targets: [%q]
`, metricsAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := netns.Exec(ns, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("--- prometheus log ---\n%s", b)
		}
	})
	client := nsHTTPClient(ns)
	waitFor(t, 30*time.Second, "prometheus to be ready", func() bool {
		select {
		case <-done:
			t.Fatal("prometheus exited before it was ready")
		default:
		}
		resp, err := client.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// promQuery asks Prometheus's HTTP API for an instant vector with one
// sample and returns its value; ok is false while there is none.
func promQuery(t *testing.T, client *http.Client, query string) (float64, bool) {
	t.Helper()
	resp, err := client.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatalf("querying prometheus: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("prometheus answered %d %s (%v)", resp.StatusCode, body, err)
	}
	if len(r.Data.Result) != 1 {
		return 0, false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// TestPrometheusScrapesDaemon: a real Prometheus scrapes a running daemon's
// [metrics] listener, and a query against Prometheus's own HTTP API shows
// the peer's byte counters rising under traffic.
func TestPrometheusScrapesDaemon(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(func(a, b *node) {
		a.Extra = "[metrics]\nlisten = \"" + metricsAddr + "\"\n"
	})
	startPrometheus(t, l, a.ns)
	client := nsHTTPClient(a.ns)

	tx := `stunnel_peer_transmit_bytes_total{job="stunnel",interface="st0",peer="` + b.ID + `"}`
	rx := `stunnel_peer_receive_bytes_total{job="stunnel",interface="st0",peer="` + b.ID + `"}`
	var tx0 float64
	waitFor(t, 30*time.Second, "prometheus to hold a scrape of the daemon", func() bool {
		v, ok := promQuery(t, client, tx)
		tx0 = v
		return ok
	})
	rx0, _ := promQuery(t, client, rx)

	const size = 8 << 20
	tcpStream(t, a.ns, b.ns, overB, streamOpts{Size: size})
	var tx1, rx1 float64
	waitFor(t, 30*time.Second, "prometheus to see the transfer in the byte counters", func() bool {
		tx1, _ = promQuery(t, client, tx)
		rx1, _ = promQuery(t, client, rx)
		return tx1 >= tx0+size && rx1 > rx0
	})
	t.Logf("prometheus: %s rose %.0f -> %.0f, %s %.0f -> %.0f", tx, tx0, tx1, rx, rx0, rx1)
	// The scrape target is healthy and the rate is visible to PromQL.
	if up, ok := promQuery(t, client, `up{job="stunnel"}`); !ok || up != 1 {
		t.Errorf("up{job=stunnel} = %v (%v), want 1", up, ok)
	}
	if hs, ok := promQuery(t, client, `stunnel_peer_handshakes_total{peer="`+b.ID+`",kind="full"}`); !ok || hs < 1 {
		t.Errorf("full handshakes = %v (%v), want >= 1", hs, ok)
	}
	// And the counter agrees with show.
	if p := a.peer(b.ID); float64(p.TxBytes) < tx1 {
		t.Errorf("show says tx %d, prometheus %.0f: the counter ran ahead of its source", p.TxBytes, tx1)
	}
}
