package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/tunnel"
	"stunnel/tunnel/control"
)

func TestCollectorText(t *testing.T) {
	hs := time.Unix(1700000000, 500_000_000)
	calls := 0
	st := func() tunnel.Status {
		calls++
		return tunnel.Status{
			Name: "st0", PeerID: "site-a", PublicKey: "PUB",
			Peers: []tunnel.PeerStatus{
				{ID: "site-b", SessionID: "ab", RxBytes: 1000, TxBytes: 2000, RxPackets: 10, TxPackets: 20,
					LastHandshake: &hs, Handshakes: 3, Drops: map[string]uint64{tunnel.DropReplayed: 4, "new_reason": 1}},
				{ID: "site-c"},
			},
			Drops:    map[string]uint64{tunnel.DropUnknownIndex: 7},
			Refusals: []tunnel.Refusal{{PeerID: "x", Reason: "unknown peer id", Count: 2}, {PeerID: "y", Reason: "unknown peer id", Count: 3}, {Reason: "cipher mismatch: we want aes"}},
		}
	}
	srv := httptest.NewServer(Handler(NewCollector(st), nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`stunnel_peer_receive_bytes_total{interface="st0",peer="site-b"} 1000`,
		`stunnel_peer_transmit_bytes_total{interface="st0",peer="site-b"} 2000`,
		`stunnel_peer_receive_packets_total{interface="st0",peer="site-b"} 10`,
		`stunnel_peer_transmit_packets_total{interface="st0",peer="site-b"} 20`,
		`stunnel_peer_last_handshake_timestamp_seconds{interface="st0",peer="site-b"} 1.7000000005e+09`,
		`stunnel_peer_last_handshake_timestamp_seconds{interface="st0",peer="site-c"} 0`,
		`stunnel_peer_handshakes_total{interface="st0",kind="full",peer="site-b"} 3`,
		`stunnel_peer_handshakes_total{interface="st0",kind="resumed",peer="site-b"} 0`,
		`stunnel_peer_drops_total{interface="st0",peer="site-b",reason="replayed"} 4`,
		`stunnel_peer_drops_total{interface="st0",peer="site-b",reason="new_reason"} 1`,
		`stunnel_peer_drops_total{interface="st0",peer="site-c",reason="auth_failed"} 0`,
		`stunnel_peer_drops_total{interface="st0",peer="site-c",reason="key_expired"} 0`,
		`stunnel_peer_up{interface="st0",peer="site-b"} 1`,
		`stunnel_peer_up{interface="st0",peer="site-c"} 0`,
		`stunnel_interface_drops_total{interface="st0",reason="unknown_index"} 7`,
		`stunnel_interface_drops_total{interface="st0",reason="bad_mac1"} 0`,
		`stunnel_interface_refused_handshakes{interface="st0",reason="unknown_peer_id"} 5`,
		`stunnel_interface_refused_handshakes{interface="st0",reason="cipher_mismatch"} 0`,
		`stunnel_interface_peers{interface="st0"} 2`,
		`stunnel_interface_info{interface="st0",peer_id="site-a",public_key="PUB"} 1`,
		"# TYPE stunnel_peer_receive_bytes_total counter",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(text, "go_goroutines") {
		t.Error("Go runtime metrics are exported")
	}
	if calls != 1 {
		t.Errorf("Status called %d times for one scrape", calls)
	}
}

func TestListenServesOnlyGETMetrics(t *testing.T) {
	s, err := Listen("127.0.0.1:0", NewCollector(func() tunnel.Status { return tunnel.Status{Name: "st0"} }), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	for path, want := range map[string]int{"/metrics": 200, "/": 404, "/debug/pprof/": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Post(base+"/metrics", "text/plain", nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Errorf("POST /metrics: %d, want 405", resp.StatusCode)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("still serving after Close")
	}
	if _, err := Listen("127.0.0.1:99999", nil, nil); err == nil || !strings.Contains(err.Error(), "[metrics] listen") {
		t.Errorf("bad address: %v", err)
	}
}

// TestTicketKeysByState: every key of the ring is counted under its state,
// the pending one a key file's --start-in makes included: an operator
// checks that every gateway holds the next key before it starts sealing.
// The known states are always there (at 0), as drop reasons are.
func TestTicketKeysByState(t *testing.T) {
	st := tunnel.Status{Name: "st0", TicketKeys: []tunnel.TicketKeyStatus{
		{Name: "aa", State: "encrypt-decrypt"}, {Name: "bb", State: "pending"}, {Name: "cc", State: "pending"},
	}}
	text := scrape(t, Handler(NewCollector(func() tunnel.Status { return st }), nil))
	for _, want := range []string{
		`stunnel_interface_ticket_keys{interface="st0",state="pending"} 2`,
		`stunnel_interface_ticket_keys{interface="st0",state="encrypt-decrypt"} 1`,
		`stunnel_interface_ticket_keys{interface="st0",state="decrypt-only"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %s in\n%s", want, text)
		}
	}
}

// TestControlRefusedConnections: the control sockets' refusals are a
// series per reason, both from the start, once the daemon hands the
// collector its counts, read at each scrape; a collector without them has
// no such series (not a false 0).
func TestControlRefusedConnections(t *testing.T) {
	c := NewCollector(func() tunnel.Status { return tunnel.Status{Name: "st0"} })
	h := Handler(c, nil)
	if text := scrape(t, h); strings.Contains(text, "stunnel_control_refused_connections_total") {
		t.Errorf("a series before any count is known:\n%s", text)
	}
	var limit, share atomic.Uint64
	c.CountControlRefused(func() (uint64, uint64) { return limit.Load(), share.Load() })
	for _, v := range [][2]uint64{{0, 0}, {7, 3}} {
		limit.Store(v[0])
		share.Store(v[1])
		text := scrape(t, h)
		for _, want := range []string{
			fmt.Sprintf(`stunnel_control_refused_connections_total{interface="st0",reason="tier_limit"} %d`, v[0]),
			fmt.Sprintf(`stunnel_control_refused_connections_total{interface="st0",reason="uid_share"} %d`, v[1]),
		} {
			if !strings.Contains(text, want+"\n") {
				t.Errorf("missing %s in\n%s", want, text)
			}
		}
	}
}

// scrape returns one scrape of h as text.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("scrape: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

// TestTenThousandPeersFitAReply: `stunnel show --metrics` reads the scrape
// through the control socket, whose client takes at most control.MaxReply
// bytes. A tunnel of 10,000 peers (the scale docs/CONFIGURATION.md
// measures) with the longest peer IDs must fit. The size is taken from 100
// peers and scaled, so the test stays cheap.
func TestTenThousandPeersFitAReply(t *testing.T) {
	hs := time.Now()
	size := func(peers int) int {
		st := tunnel.Status{Name: "st0", PeerID: "hub", PublicKey: strings.Repeat("P", 44)}
		for i := range peers {
			id := fmt.Sprintf("%05d", i) + strings.Repeat("x", conf.MaxPeerIDLen-5)
			st.Peers = append(st.Peers, tunnel.PeerStatus{ID: id, SessionID: "ab", LastHandshake: &hs,
				RxBytes: 1 << 40, TxBytes: 1 << 40, RxPackets: 1 << 30, TxPackets: 1 << 30, Handshakes: 1 << 20})
		}
		return len(scrape(t, Handler(NewCollector(func() tunnel.Status { return st }), nil)))
	}
	perPeer := size(101) - size(1)
	if total := 100 * perPeer; total > control.MaxReply {
		t.Errorf("10,000 peers make a %d-byte scrape (%d per 100 peers); the control client takes at most %d", total, perPeer, control.MaxReply)
	}
}
