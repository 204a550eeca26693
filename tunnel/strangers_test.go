package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/fakeclock"
)

// countHandler counts log records.
type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h *countHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countHandler) WithGroup(string) slog.Handler             { return h }

// Issue 12, finding 5: the warn limiter cannot be reset or outgrown by what
// strangers send. The old one cleared its map after 1024 keys, so rotating
// claimed peer IDs let every line through again.
func TestWarnLimiterIsBoundedAndCannotBeReset(t *testing.T) {
	clock := fakeclock.New(time.Unix(1e9, 0))
	h := &countHandler{}
	r := newRateLimitedLog(slog.New(h), clock.Now)
	// Two keys share a bucket one time in warnBuckets (the hash is keyed
	// at random); the test needs two that do not.
	stranger := netip.MustParseAddr("198.18.0.9")
	for r.sourceHash(stranger, "bad-mac1")%warnBuckets == r.keyHash("refused-alice-unknown peer id")%warnBuckets {
		stranger = stranger.Next()
	}
	r.warn("refused-alice-unknown peer id", "refused")
	r.warnFrom(stranger, "bad-mac1", "bad mac1")
	if h.n.Load() != 2 {
		t.Fatalf("%d lines, want 2", h.n.Load())
	}
	// A stranger rotates claimed IDs and source addresses.
	for i := range 100000 {
		r.warn(fmt.Sprintf("refused-mallory%d-unknown peer id", i), "refused")
		r.warnFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), "bad-mac1", "bad mac1")
	}
	if n := h.n.Load(); n > 2+warnBuckets {
		t.Fatalf("%d lines from 200000 rotating keys within one interval; the bound is %d", n, 2+warnBuckets)
	}
	before := h.n.Load()
	r.warn("refused-alice-unknown peer id", "refused")
	r.warnFrom(stranger, "bad-mac1", "bad mac1")
	if h.n.Load() != before {
		t.Fatal("the flood reset the limiter: a key logged in this interval logged again")
	}
	// One source's IPv6 /64 is one source.
	for i := range 1000 {
		r.warnFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}), "bad-mac1", "bad mac1")
	}
	if n := h.n.Load() - before; n > 1 {
		t.Fatalf("one /64 logged %d lines in one interval", n)
	}
	clock.Advance(11 * time.Second)
	before = h.n.Load()
	r.warn("refused-alice-unknown peer id", "refused")
	if h.n.Load() != before+1 {
		t.Fatal("a key did not log again after the interval")
	}
}

// The refusal list: a stranger rotating claimed IDs from one address cannot
// push out what other sources caused.
func TestRefusalListKeepsOtherSources(t *testing.T) {
	var r refusalLog
	now := time.Unix(1e9, 0)
	// Two sources share a slot one time in maxRefusals (the hash is keyed
	// at random); the test needs two that do not.
	alice := netip.MustParseAddrPort("198.18.0.5:51820")
	r.mu.Lock()
	for r.slotLocked("key mismatch", alice.String()) == r.slotLocked("unknown peer id", "198.18.0.66:4444") {
		alice = netip.AddrPortFrom(alice.Addr().Next(), alice.Port())
	}
	r.mu.Unlock()
	r.record("alice", "key mismatch", alice.String(), now)
	for i := range 10000 {
		r.record(fmt.Sprintf("mallory%d", i), "unknown peer id", "198.18.0.66:4444", now.Add(time.Duration(i)*time.Millisecond))
	}
	got := r.snapshot()
	if len(got) > maxRefusals {
		t.Fatalf("%d refusals, bound %d", len(got), maxRefusals)
	}
	var aliceSeen, mallory int
	for _, e := range got {
		switch e.Endpoint {
		case alice.String():
			aliceSeen++
			if e.PeerID != "alice" || e.Count != 1 {
				t.Errorf("alice's entry changed: %+v", e)
			}
		case "198.18.0.66:4444":
			mallory++
		}
	}
	if aliceSeen != 1 {
		t.Fatalf("alice's refusal was pushed out by one rotating source: %+v", got)
	}
	if mallory != 1 {
		t.Fatalf("one source and reason took %d slots", mallory)
	}
	if got[0].Endpoint != "198.18.0.66:4444" {
		t.Errorf("not newest first: %+v", got[0])
	}
}

// msgCounter keeps the messages of the log records handled through it, in
// order; the zero value is ready for use.
type msgCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (h *msgCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *msgCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *msgCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *msgCounter) WithGroup(string) slog.Handler      { return h }

// count is how many records had message msg.
func (h *msgCounter) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// all is every message so far, in order.
func (h *msgCounter) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// has reports whether a message so far contains part.
func (h *msgCounter) has(part string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.msgs {
		if strings.Contains(m, part) {
			return true
		}
	}
	return false
}

// Anyone who knows our public key can make initiations that claim any peer
// ID. A stranger rotating claimed IDs from one address gets one warning
// line per interval, and cannot use up the warn limiter's buckets to
// silence the warnings about everything else.
func TestRefusalsRotatingClaimedIDsDoNotSilenceOtherWarnings(t *testing.T) {
	logs := &msgCounter{}
	p := newPairOpts(t, nil, 0, nil, func(h *host, o *Options) {
		if h.cfg.Interface.PeerID == "beta" {
			o.Logger = slog.New(logs)
		}
	})
	d := p.b.dev
	stranger := netip.MustParseAddrPort("198.18.0.66:4444")
	// A key of ours that does not share the stranger's bucket (one time in
	// warnBuckets it would; the seed is random).
	other := "udp-send-alpha"
	for i := 0; d.warn.keyHash(other)%warnBuckets == d.warn.sourceHash(stranger.Addr(), "refused-unknown peer id")%warnBuckets; i++ {
		other = fmt.Sprintf("udp-send-alpha%d", i)
	}
	for i := range 5000 {
		err := &handshake.PeerError{PeerID: fmt.Sprintf("mallory%d", i), Err: handshake.ErrUnknownPeer}
		d.initiationFailed(err, stranger.String(), stranger.Addr())
	}
	if n := logs.count("refused handshake"); n != 1 {
		t.Errorf("one source rotating claimed IDs logged %d refusal lines in one interval, want 1", n)
	}
	d.warn.warn(other, "sending failed")
	if n := logs.count("sending failed"); n != 1 {
		t.Errorf("a warning of ours was silenced by a stranger's refusals (%d lines)", n)
	}
	if n := d.Status().Drops[DropHandshakeFailed]; n != 5000 {
		t.Errorf("handshake_failed %d, want 5000: every refusal is still counted", n)
	}
}
