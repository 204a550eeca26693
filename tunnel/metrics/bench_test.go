package metrics

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"stunnel/tunnel"
)

// BenchmarkScrape1000Peers: one whole /metrics scrape of a tunnel with 1000
// peers (the status snapshot is prebuilt: Status's own cost is not ours).
func BenchmarkScrape1000Peers(b *testing.B) {
	hs := time.Now()
	st := tunnel.Status{Name: "st0", PeerID: "hub", Drops: map[string]uint64{tunnel.DropUnknownIndex: 3}}
	for i := range 1000 {
		st.Peers = append(st.Peers, tunnel.PeerStatus{ID: fmt.Sprintf("peer-%04d", i), SessionID: "ab",
			RxBytes: 1 << 30, TxBytes: 1 << 31, LastHandshake: &hs, Handshakes: 9,
			Drops: map[string]uint64{tunnel.DropReplayed: 1}})
	}
	h := Handler(NewCollector(func() tunnel.Status { return st }), nil)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
