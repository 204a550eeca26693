// Package metrics exports a tunnel's status to Prometheus. A Collector reads
// tunnel.Status at scrape time, so the packet path pays nothing for metrics:
// the counters it already keeps for `stunnel show` are the source.
//
// The names are documented in docs/CONFIGURATION.md ([metrics]); keep both
// in step.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"stunnel/internal/panicsite"
	"stunnel/tunnel"
)

var (
	peerLabels = []string{"interface", "peer"}

	descUp = prometheus.NewDesc("stunnel_peer_up",
		"1 if the peer has a current session, else 0.", peerLabels, nil)
	descRxBytes = prometheus.NewDesc("stunnel_peer_receive_bytes_total",
		"Bytes of authenticated data packets received from the peer.", peerLabels, nil)
	descTxBytes = prometheus.NewDesc("stunnel_peer_transmit_bytes_total",
		"Bytes of data packets sent to the peer.", peerLabels, nil)
	descRxPackets = prometheus.NewDesc("stunnel_peer_receive_packets_total",
		"Authenticated data packets received from the peer.", peerLabels, nil)
	descTxPackets = prometheus.NewDesc("stunnel_peer_transmit_packets_total",
		"Data packets sent to the peer.", peerLabels, nil)
	descLastHandshake = prometheus.NewDesc("stunnel_peer_last_handshake_timestamp_seconds",
		"Unix time of the last completed handshake with the peer; 0 if none yet.", peerLabels, nil)
	descHandshakes = prometheus.NewDesc("stunnel_peer_handshakes_total",
		"Completed handshakes with the peer, by kind: full (static-key handshake) or resumed (session ticket).",
		append(peerLabels, "kind"), nil)
	descPeerDrops = prometheus.NewDesc("stunnel_peer_drops_total",
		"Packets to or from the peer dropped, by reason.", append(peerLabels, "reason"), nil)
	descCookieReplies = prometheus.NewDesc("stunnel_peer_cookie_replies_total",
		"Cookie replies received from the peer (it was under load).", peerLabels, nil)
	descIfDrops = prometheus.NewDesc("stunnel_interface_drops_total",
		"Packets dropped that cannot be charged to a known peer, by reason.", []string{"interface", "reason"}, nil)
	descRefused = prometheus.NewDesc("stunnel_interface_refused_handshakes",
		"Refused handshakes by reason, summed over the sources the daemon still remembers (a bounded list, so this may fall).",
		[]string{"interface", "reason"}, nil)
	descRestored = prometheus.NewDesc("stunnel_peer_session_restored",
		"1 if the peer's current session came back from the state file at start.", peerLabels, nil)
	descResumeRefused = prometheus.NewDesc("stunnel_peer_resumptions_refused_total",
		"The peer's session resumptions we refused, by reason.", append(peerLabels, "reason"), nil)
	descIfResumeRefused = prometheus.NewDesc("stunnel_interface_resumptions_refused_total",
		"Session resumptions refused, by reason (also those whose ticket named no peer).", []string{"interface", "reason"}, nil)
	descTicketKeys = prometheus.NewDesc("stunnel_interface_ticket_keys",
		"Session-ticket keys in the ring by state: pending (not sealing yet), encrypt-decrypt, decrypt-only.", []string{"interface", "state"}, nil)
	descControlRefused = prometheus.NewDesc("stunnel_control_refused_connections_total",
		"Connections to the control sockets refused at the connection limit, by reason: tier_limit (the caller's tier was full) or uid_share (the caller's uid held its share).",
		[]string{"interface", "reason"}, nil)
	descPeers = prometheus.NewDesc("stunnel_interface_peers",
		"Configured peers.", []string{"interface"}, nil)
	descInfo = prometheus.NewDesc("stunnel_interface_info",
		"Always 1; labels say who this host is.", []string{"interface", "peer_id", "public_key"}, nil)
)

// Every drop reason, so each series exists (at 0) from the first scrape:
// rate() over a series that appears late misses its first increase.
var (
	peerDropReasons = []string{tunnel.DropNoKey, tunnel.DropAuthFailed, tunnel.DropReplayed, tunnel.DropKeyExpired,
		tunnel.DropSourceNotAllowed, tunnel.DropMalformed, tunnel.DropQueueFull, tunnel.DropHandshakeFailed, tunnel.DropNoEndpoint}
	ifDropReasons = []string{tunnel.DropNoRoute, tunnel.DropUnknownIndex, tunnel.DropMalformed,
		tunnel.DropBadMAC1, tunnel.DropRateLimited, tunnel.DropHandshakeFailed}
	// Pending is a key file's key with a future start (--start-in): a
	// fleet has one after every rotation, and whether each gateway holds it
	// before it starts sealing is what an operator needs to see.
	ticketKeyStates = []string{"pending", "encrypt-decrypt", "decrypt-only"}
)

// Collector is a prometheus.Collector over a tunnel's status.
type Collector struct {
	status func() tunnel.Status // called once per scrape; safe for concurrent use
	// controlRefused, once set, counts the control sockets' refused
	// connections. It is set after the control server starts, which
	// serves this collector's metrics: a scrape may come first.
	controlRefused atomic.Pointer[func() (tierLimit, uidShare uint64)]
}

// NewCollector collects from status, e.g. (*tunnel.Device).Status.
func NewCollector(status func() tunnel.Status) *Collector { return &Collector{status: status} }

// CountControlRefused adds stunnel_control_refused_connections_total,
// read from refused (e.g. (*control.Server).Refused) at each scrape. Both
// reasons are series from the start, at 0, like the drop reasons.
func (c *Collector) CountControlRefused(refused func() (tierLimit, uidShare uint64)) {
	c.controlRefused.Store(&refused)
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRxBytes, descTxBytes, descRxPackets, descTxPackets,
		descLastHandshake, descHandshakes, descPeerDrops, descCookieReplies, descIfDrops, descRefused, descPeers, descInfo,
		descRestored, descResumeRefused, descIfResumeRefused, descTicketKeys, descControlRefused} {
		ch <- d
	}
}

// descPanic names the error a scrape fails with when collecting panicked.
var descPanic = prometheus.NewDesc("stunnel_collect_failed", "Collecting the tunnel's status failed.", nil, nil)

// Collect takes one status snapshot and sends every metric from it, or,
// if making them panics, none: one invalid metric instead, whose error
// (the panic and where it was raised, never a stack trace) fails the
// scrape with a 500 and reaches the log through Handler. The registry
// would recover the panic itself, but serve the series sent before it
// with a 200, and put a stack trace in its error, which goes to the
// scraper.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var out []prometheus.Metric
	func() {
		defer func() {
			if p := recover(); p != nil {
				err := fmt.Errorf("collecting the tunnel's status panicked: %v (at %s)", p, panicsite.Of())
				out = []prometheus.Metric{prometheus.NewInvalidMetric(descPanic, err)}
			}
		}()
		c.collect(func(m prometheus.Metric) { out = append(out, m) })
	}()
	for _, m := range out {
		ch <- m
	}
}

// collect makes every metric of one status snapshot and gives each to emit.
func (c *Collector) collect(emit func(prometheus.Metric)) {
	st := c.status()
	ifn := st.Name
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		emit(prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		emit(prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	gauge(descInfo, 1, ifn, st.PeerID, st.PublicKey)
	gauge(descPeers, float64(len(st.Peers)), ifn)
	for i := range st.Peers {
		p := &st.Peers[i]
		up := 0.0
		if p.SessionID != "" {
			up = 1
		}
		gauge(descUp, up, ifn, p.ID)
		counter(descRxBytes, p.RxBytes, ifn, p.ID)
		counter(descTxBytes, p.TxBytes, ifn, p.ID)
		counter(descRxPackets, p.RxPackets, ifn, p.ID)
		counter(descTxPackets, p.TxPackets, ifn, p.ID)
		last := 0.0
		if p.LastHandshake != nil && !p.LastHandshake.IsZero() {
			last = float64(p.LastHandshake.UnixNano()) / float64(time.Second)
		}
		gauge(descLastHandshake, last, ifn, p.ID)
		counter(descHandshakes, p.Handshakes-p.HandshakesResumed, ifn, p.ID, "full")
		counter(descHandshakes, p.HandshakesResumed, ifn, p.ID, "resumed")
		restored := 0.0
		if p.Restored {
			restored = 1
		}
		gauge(descRestored, restored, ifn, p.ID)
		for _, r := range reasons(nil, p.ResumptionsRefused) {
			counter(descResumeRefused, p.ResumptionsRefused[r], ifn, p.ID, labelOf(r))
		}
		for _, r := range reasons(peerDropReasons, p.Drops) {
			counter(descPeerDrops, p.Drops[r], ifn, p.ID, r)
		}
		counter(descCookieReplies, p.CookieReplies, ifn, p.ID)
	}
	for _, r := range reasons(ifDropReasons, st.Drops) {
		counter(descIfDrops, st.Drops[r], ifn, r)
	}
	for _, r := range reasons(nil, st.ResumptionsRefused) {
		counter(descIfResumeRefused, st.ResumptionsRefused[r], ifn, labelOf(r))
	}
	keys := map[string]uint64{}
	for _, k := range st.TicketKeys {
		keys[k.State]++
	}
	for _, state := range reasons(ticketKeyStates, keys) {
		gauge(descTicketKeys, float64(keys[state]), ifn, state)
	}
	refused := map[string]uint64{}
	for _, r := range st.Refusals {
		refused[refusalReason(r.Reason)] += r.Count
	}
	for _, r := range reasons(nil, refused) {
		gauge(descRefused, float64(refused[r]), ifn, r)
	}
	if f := c.controlRefused.Load(); f != nil {
		tierLimit, uidShare := (*f)()
		counter(descControlRefused, tierLimit, ifn, "tier_limit")
		counter(descControlRefused, uidShare, ifn, "uid_share")
	}
}

// reasons is base plus any other key of m, sorted: the fixed set always, and
// a reason added to the tunnel later without a change here.
func reasons(base []string, m map[string]uint64) []string {
	set := make(map[string]bool, len(base)+len(m))
	for _, r := range base {
		set[r] = true
	}
	for r := range m {
		set[r] = true
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// refusalReason turns a refusal's text ("unknown peer id", "cipher mismatch:
// we want aes256gcm...") into a label value of bounded cardinality: the part
// before any ':' with spaces as underscores.
func refusalReason(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			s = s[:i]
			break
		}
	}
	b := []byte(s)
	for i, c := range b {
		if c == ' ' {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "other"
	}
	return string(b)
}

// scrapeTimeout bounds a scrape of the [metrics] endpoint: past it the
// scraper gets a 503 (the collection itself cannot be interrupted and runs
// on, keeping its slot of MaxScrapes). A variable for tests only.
var scrapeTimeout = 10 * time.Second

// Handler serves the collector in the Prometheus text format, with nothing
// else registered (no Go runtime metrics: a scrape shows the tunnel only).
// A scrape's errors (a panic while collecting among them) go to log, one
// error line each; nil logs nowhere. It is the control socket's: it has no
// timeout and returns only once its collection has ended, since that
// socket bounds the snapshots made at once by its connection limit, and a
// connection holds its slot only until the handler returns (its client
// gives up after control.ReplyTimeout all the same).
func Handler(c *Collector, log *slog.Logger) http.Handler { return handler(c, log, 0, 0) }

// handler is Handler with a timeout (0: none), past which the scraper
// gets a 503 while the collection runs on, making at most maxScrapes
// scrapes at once (0: no bound); one beyond them gets a 503 at once, with
// no snapshot taken. promhttp's own bound, since it sits inside its
// timeout: a scrape that timed out keeps its slot until its collection
// ends, where a bound around the handler would free it while the snapshot
// runs on, and a flood that slows the daemon past the timeout would start
// ever more.
func handler(c *Collector, log *slog.Logger, timeout time.Duration, maxScrapes int) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: timeout, MaxRequestsInFlight: maxScrapes}
	if log != nil {
		opts.ErrorLog = errorLog{log}
	}
	return promhttp.HandlerFor(reg, opts)
}

// errorLog is promhttp's error logger on a slog.Logger.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Println(v ...any) {
	e.log.Error("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

// The endpoint's bounds. It has no authentication: any local user may
// connect to the loopback port, and a scrape of a big tunnel costs the
// daemon a status snapshot and tens of megabytes (10,000 peers: about a
// second of CPU and 25 MB of text). Unbounded, a local flood of scrapes
// takes the daemon's CPU and memory, and one of idle connections its file
// descriptors; the control sockets have their connection limit for the
// same reason. A scraper (or an HA pair of them) holds one connection and
// makes one scrape at a time, so these are several times normal use.
const (
	// MaxConns bounds the endpoint's open connections. Those beyond it
	// wait in the kernel's accept queue, costing the daemon nothing,
	// until one ends: a silent one within ReadHeaderTimeout, an idle
	// one within IdleTimeout.
	MaxConns = 16
	// MaxScrapes bounds the scrapes made at once; one beyond it gets a
	// 503 at once, with no status snapshot taken.
	MaxScrapes = 4
)

// Server serves /metrics on a TCP address.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen starts serving c at http://addr/metrics, logging a scrape's
// errors to log as Handler does. Only GET /metrics is answered; the
// endpoint reads and never changes anything. It keeps at most MaxConns
// connections open and makes at most MaxScrapes scrapes at once, with a
// handler of its own: the control socket's (Handler) is bounded by that
// socket's connection limit only, so a flood here leaves `stunnel show
// --metrics` working.
func Listen(addr string, c *Collector, log *slog.Logger) (*Server, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("[metrics] listen %s: %v", addr, err)
	}
	ln := netutil.LimitListener(tcp, MaxConns)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", handler(c, log, scrapeTimeout, MaxScrapes))
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address actually bound.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, letting a scrape in progress finish (up to 5 s).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}

// labelOf makes a reason text ("ticket key unknown") a label value.
func labelOf(s string) string { return strings.ReplaceAll(s, " ", "_") }
