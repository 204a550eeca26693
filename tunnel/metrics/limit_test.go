package metrics

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/tunnel"
)

// TestListenBoundsScrapesAtOnce: the endpoint has no authentication, so
// any local user may scrape it; a scrape of a big tunnel costs the daemon
// a status snapshot and tens of megabytes. Beyond MaxScrapes at once a
// scrape gets a 503 at once, without a snapshot, so a local flood of
// scrapes cannot take the daemon's CPU and memory (the control sockets
// have their connection limit for the same reason).
func TestListenBoundsScrapesAtOnce(t *testing.T) {
	inside, url := stalledScrapes(t)
	client := &http.Client{Timeout: 10 * time.Second}
	codes := make(chan int, MaxScrapes+2)
	for range MaxScrapes + 2 {
		go func() {
			resp, err := client.Get(url)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range 2 {
		select {
		case c := <-codes:
			if c != http.StatusServiceUnavailable {
				t.Fatalf("a scrape beyond %d at once: status %d, want 503", MaxScrapes, c)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d scrapes at once were all taken: %d status snapshots under way", MaxScrapes+2, inside.Load())
		}
	}
	if n := inside.Load(); n != MaxScrapes {
		t.Errorf("%d status snapshots under way, want %d", n, MaxScrapes)
	}
}

// TestListenBoundsConnections: connections beyond MaxConns wait in the
// kernel's queue, not in the daemon (a goroutine and buffers each), until
// one of those open ends.
func TestListenBoundsConnections(t *testing.T) {
	s, err := Listen("127.0.0.1:0", NewCollector(func() tunnel.Status { return tunnel.Status{Name: "st0"} }), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range MaxConns {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The held connections are ahead in the kernel's queue: the daemon
	// accepts them first, and a scrape after them waits.
	client := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := client.Get("http://" + s.Addr().String() + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatalf("a scrape was served with %d connections open", MaxConns)
	}
	held[0].Close()
	held = held[1:]
	client.Timeout = 5 * time.Second
	resp, err := client.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("a scrape once a connection ended: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a scrape once a connection ended: %d", resp.StatusCode)
	}
}

// TestListenScrapeTimeoutKeepsItsSlot: a scrape that passes its timeout is
// answered 503, but its status snapshot goes on until it ends (a
// collection cannot be interrupted), and it keeps its slot until then:
// otherwise a flood that slows the daemon past the timeout would start
// ever more snapshots, MaxScrapes more each time one times out.
func TestListenScrapeTimeoutKeepsItsSlot(t *testing.T) {
	was := scrapeTimeout
	scrapeTimeout = 50 * time.Millisecond
	defer func() { scrapeTimeout = was }()
	inside, url := stalledScrapes(t)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() int {
		resp, err := client.Get(url)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range MaxScrapes {
		if c := get(); c != http.StatusServiceUnavailable {
			t.Fatalf("scrape %d with the snapshot stuck: %d, want its timeout's 503", i, c)
		}
	}
	// Every earlier scrape timed out; their snapshots still run.
	if c := get(); c != http.StatusServiceUnavailable {
		t.Fatalf("one more scrape: %d, want 503", c)
	}
	if n := inside.Load(); n != MaxScrapes {
		t.Errorf("%d status snapshots under way after the scrapes timed out, want %d", n, MaxScrapes)
	}
}

// TestHandlerReturnsWithItsCollection: the control socket's handler
// (Handler) returns only once its collection has ended, however long that
// takes. That socket bounds the snapshots made at once by its connection
// limit, and a connection holds its slot only until the handler returns:
// a handler that gave up at a timeout while its collection ran on would
// free the slot for one more snapshot, and a flood that slows the daemon
// past the timeout would pile them up past the limit.
func TestHandlerReturnsWithItsCollection(t *testing.T) {
	was := scrapeTimeout
	scrapeTimeout = 50 * time.Millisecond
	defer func() { scrapeTimeout = was }()
	release := make(chan struct{})
	h := Handler(NewCollector(func() tunnel.Status {
		<-release
		return tunnel.Status{Name: "st0"}
	}), nil)
	done := make(chan int, 1)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		done <- w.Code
	}()
	select {
	case c := <-done:
		close(release)
		t.Fatalf("the handler returned %d while its collection still ran", c)
	case <-time.After(10 * scrapeTimeout):
	}
	close(release)
	if c := <-done; c != http.StatusOK {
		t.Fatalf("once the collection ended: %d, want 200", c)
	}
}

// stalledScrapes serves metrics whose collection blocks until the test
// ends; inside counts the collections begun.
func stalledScrapes(t *testing.T) (inside *atomic.Int32, url string) {
	t.Helper()
	release := make(chan struct{})
	inside = new(atomic.Int32)
	s, err := Listen("127.0.0.1:0", NewCollector(func() tunnel.Status {
		inside.Add(1)
		<-release
		return tunnel.Status{Name: "st0"}
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() { close(release) }) // first: the collections end, then the server
	return inside, "http://" + s.Addr().String() + "/metrics"
}
