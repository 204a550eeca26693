package tunnel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/fakeclock"
	"stunnel/internal/waitfor"
)

func ipv4UDP(src, dst string, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], 5000)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func ipv6UDP(src, dst string, payload []byte) []byte {
	p := make([]byte, 48+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(8+len(payload)))
	p[6], p[7] = 17, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	binary.BigEndian.PutUint16(p[40:], 4000)
	binary.BigEndian.PutUint16(p[42:], 5000)
	binary.BigEndian.PutUint16(p[44:], uint16(8+len(payload)))
	copy(p[48:], payload)
	return p
}

type host struct {
	dev   *Device
	tun   *memTUN
	bind  *memBind
	cfg   *conf.Config
	key   handshake.PrivateKey
	under string // underlay address:port
}

type pair struct {
	t     testing.TB
	net   *memNet
	clock *fakeclock.Clock
	a, b  *host
}

func mustKey(t testing.TB) handshake.PrivateKey {
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newPair starts two tunnels on an in-memory network: a at 198.18.0.1
// (overlay 198.19.0.1, fd00::1) and b at 198.18.0.2 (198.19.0.2, fd00::2).
func newPair(t testing.TB, mutate func(a, b *conf.Config)) *pair {
	t.Helper()
	return newPairInline(t, mutate, 0)
}

// inlineModes are the ways batches reach the crypto: as on this machine
// (0), and always through the workers (-1), so both paths are tested
// whatever the number of CPUs.
var inlineModes = []int{0, -1}

func newPairInline(t testing.TB, mutate func(a, b *conf.Config), inline int) *pair {
	t.Helper()
	return newPairTUN(t, mutate, inline, nil)
}

// newPairTUN is newPairInline where b's device reads and writes the TUN
// that bTUN makes of its memTUN (nil: the memTUN itself).
func newPairTUN(t testing.TB, mutate func(a, b *conf.Config), inline int, bTUN func(*memTUN) tun.Device) *pair {
	t.Helper()
	return newPairOpts(t, mutate, inline, bTUN, nil)
}

// newPairOpts is newPairTUN with a hook that may change each host's Options.
func newPairOpts(t testing.TB, mutate func(a, b *conf.Config), inline int, bTUN func(*memTUN) tun.Device, opts func(h *host, o *Options)) *pair {
	t.Helper()
	goroutines := runtime.NumGoroutine()
	p := &pair{t: t, net: newMemNet(), clock: newFakeClock()}
	ka, kb := mustKey(t), mustKey(t)
	p.a = &host{key: ka, under: "198.18.0.1:51820"}
	p.b = &host{key: kb, under: "198.18.0.2:51820"}
	p.a.cfg = &conf.Config{
		Path:      "a.toml",
		Interface: conf.Interface{Name: "sta", PeerID: "alpha", PrivateKey: ka, PublicKey: ka.PublicKey(), ListenPort: 51820, MTU: 1420},
		Peers: []conf.Peer{{ID: "beta", PublicKey: kb.PublicKey(), Endpoint: p.b.under,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32"), netip.MustParsePrefix("fd00::2/128")}}},
	}
	p.b.cfg = &conf.Config{
		Path:      "b.toml",
		Interface: conf.Interface{Name: "stb", PeerID: "beta", PrivateKey: kb, PublicKey: kb.PublicKey(), ListenPort: 51820, MTU: 1420},
		Peers: []conf.Peer{{ID: "alpha", PublicKey: ka.PublicKey(), Endpoint: p.a.under,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/32"), netip.MustParsePrefix("fd00::1/128")}}},
	}
	if mutate != nil {
		mutate(p.a.cfg, p.b.cfg)
	}
	for _, h := range []*host{p.a, p.b} {
		h.tun = newMemTUN()
		h.bind = p.net.bind(h.under)
		var w io.Writer = testWriter{t, h.cfg.Interface.PeerID}
		if _, fuzzing := t.(*testing.F); fuzzing {
			w = io.Discard // a fuzz target may not log through f
		}
		log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var dev tun.Device = h.tun
		if h == p.b && bTUN != nil {
			dev = bTUN(h.tun)
		}
		// Quiet: most tests drive every handshake themselves; startup_test.go
		// turns the handshake at start back on.
		o := Options{TUN: dev, Bind: h.bind, Now: p.clock.Now, TickInterval: -1, Logger: log, InlineLimit: inline, QuietStart: true}
		if opts != nil {
			opts(h, &o)
		}
		d, err := New(h.cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		h.dev = d
	}
	t.Cleanup(func() {
		p.a.dev.Close()
		p.b.dev.Close()
		if _, fuzzing := t.(*testing.F); fuzzing {
			return // the fuzzing engine's own goroutines come and go
		}
		waitFor(t, 5*time.Second, "goroutines of both tunnels to end", func() bool {
			return runtime.NumGoroutine() <= goroutines
		})
	})
	return p
}

// testWriter sends a tunnel's log lines to the test log, shown on failure.
type testWriter struct {
	t    testing.TB
	name string
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(w.name + ": " + string(bytes.TrimSpace(b)))
	return len(b), nil
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, timeout, 2*time.Millisecond, what, cond)
}

// expect waits for the next packet the host's tunnel writes to its TUN.
func (h *host) expect(t testing.TB, want []byte) {
	t.Helper()
	select {
	case got := <-h.tun.fromTunnel:
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: TUN got %x, want %x", h.cfg.Interface.PeerID, got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no packet arrived on TUN", h.cfg.Interface.PeerID)
	}
}

func (h *host) peerStatus(t *testing.T) PeerStatus {
	t.Helper()
	st := h.dev.Status()
	if len(st.Peers) != 1 {
		t.Fatalf("%d peers in status", len(st.Peers))
	}
	return st.Peers[0]
}

func TestPacketsBothWaysIPv4AndIPv6(t *testing.T) {
	for _, inline := range inlineModes {
		t.Run(fmt.Sprintf("inline=%d", inline), func(t *testing.T) { testPacketsBothWays(t, inline) })
	}
}

func testPacketsBothWays(t *testing.T, inline int) {
	p := newPairInline(t, nil, inline)
	for i := range 20 {
		out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{byte(i), 1, 2, 3})
		p.a.tun.toTunnel <- out
		p.b.expect(t, out)
		back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte{byte(i), 9})
		p.b.tun.toTunnel <- back
		p.a.expect(t, back)
		out6 := ipv6UDP("fd00::1", "fd00::2", []byte{byte(i), 6})
		p.a.tun.toTunnel <- out6
		p.b.expect(t, out6)
		back6 := ipv6UDP("fd00::2", "fd00::1", []byte{byte(i), 7})
		p.b.tun.toTunnel <- back6
		p.a.expect(t, back6)
	}
	sa, sb := p.a.peerStatus(t), p.b.peerStatus(t)
	if sa.SessionID == "" || sa.SessionID != sb.SessionID {
		t.Fatalf("session IDs differ or are empty: %q vs %q", sa.SessionID, sb.SessionID)
	}
	if sa.Handshakes != 1 || sb.Handshakes != 1 {
		t.Fatalf("handshakes a=%d b=%d, want 1 each", sa.Handshakes, sb.Handshakes)
	}
	if sb.RxPackets < 40 || sa.RxPackets < 40 {
		t.Fatalf("rx packets a=%d b=%d, want >= 40", sa.RxPackets, sb.RxPackets)
	}
	if sb.Endpoint != p.a.under {
		t.Fatalf("b sees a at %q, want %q", sb.Endpoint, p.a.under)
	}
}

func TestRekeyKeepsTrafficFlowing(t *testing.T) {
	for _, inline := range inlineModes {
		t.Run(fmt.Sprintf("inline=%d", inline), func(t *testing.T) { testRekeyKeepsTrafficFlowing(t, inline) })
	}
}

func testRekeyKeepsTrafficFlowing(t *testing.T, inline int) {
	p := newPairInline(t, nil, inline)
	ping := func(i int) {
		out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{byte(i)})
		p.a.tun.toTunnel <- out
		p.b.expect(t, out)
		back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte{byte(i)})
		p.b.tun.toTunnel <- back
		p.a.expect(t, back)
		out6 := ipv6UDP("fd00::1", "fd00::2", []byte{byte(i)})
		p.a.tun.toTunnel <- out6
		p.b.expect(t, out6)
		back6 := ipv6UDP("fd00::2", "fd00::1", []byte{byte(i)})
		p.b.tun.toTunnel <- back6
		p.a.expect(t, back6)
	}
	ping(0)
	first := p.a.peerStatus(t).SessionID
	sessions := map[string]bool{first: true}
	for round := 1; round <= 3; round++ {
		// Past rekey_after the initiator's next send starts a handshake; the
		// packet itself still goes out under the old key, nothing waits.
		p.clock.Advance(121 * time.Second)
		ping(round)
		waitFor(t, 5*time.Second, "the rekey handshake", func() bool {
			return p.a.peerStatus(t).Handshakes == uint64(round+1) && p.b.peerStatus(t).Handshakes == uint64(round+1)
		})
		ping(round + 100)
		sa, sb := p.a.peerStatus(t), p.b.peerStatus(t)
		if sa.SessionID != sb.SessionID || sessions[sa.SessionID] {
			t.Fatalf("round %d: session a=%s b=%s, want a new shared one", round, sa.SessionID, sb.SessionID)
		}
		sessions[sa.SessionID] = true
		for _, s := range []PeerStatus{sa, sb} {
			if s.Drops[DropNoKey] != 0 || s.Drops[DropAuthFailed] != 0 || s.Drops[DropReplayed] != 0 {
				t.Fatalf("round %d: drops %v", round, s.Drops)
			}
		}
	}
}

func TestSourceOutsideAllowedIPsIsDropped(t *testing.T) {
	p := newPair(t, nil)
	ok := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("ok"))
	p.a.tun.toTunnel <- ok
	p.b.expect(t, ok)
	// a's kernel hands it a packet with a source a does not own; a seals it
	// (it routes by destination), b must refuse it after opening.
	p.a.tun.toTunnel <- ipv4UDP("198.19.99.9", "198.19.0.2", []byte("forged"))
	waitFor(t, 5*time.Second, "the forged packet to be counted", func() bool {
		return p.b.peerStatus(t).Drops[DropSourceNotAllowed] == 1
	})
	after := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("after"))
	p.a.tun.toTunnel <- after
	p.b.expect(t, after) // the forged one never reached b's TUN: the next packet is this one
}

func TestReplayedDatagramIsDropped(t *testing.T) {
	var recorded [][]byte
	p := newPair(t, nil)
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if b[0] == handshake.MessageTypeData && len(b) > 32 {
			recorded = append(recorded, append([]byte(nil), b...))
		}
		return true
	}
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("once"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	if len(recorded) == 0 {
		t.Fatal("nothing recorded")
	}
	attacker := netip.MustParseAddrPort("198.18.0.66:4444")
	for _, r := range recorded {
		p.net.inject(netip.MustParseAddrPort(p.a.under), netip.MustParseAddrPort(p.b.under), r)
		p.net.inject(attacker, netip.MustParseAddrPort(p.b.under), r)
	}
	waitFor(t, 5*time.Second, "replays to be counted", func() bool {
		return p.b.peerStatus(t).Drops[DropReplayed] == uint64(2*len(recorded))
	})
	if ep := p.b.peerStatus(t).Endpoint; ep != p.a.under {
		t.Fatalf("replay moved the endpoint to %s", ep)
	}
	select {
	case got := <-p.b.tun.fromTunnel:
		t.Fatalf("replayed packet reached the TUN: %x", got)
	default:
	}
}

func TestNoRouteIsCounted(t *testing.T) {
	p := newPair(t, nil)
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.55.5", []byte("nowhere"))
	waitFor(t, 5*time.Second, "the no-route drop", func() bool {
		return p.a.dev.Status().Drops[DropNoRoute] == 1
	})
}

func TestUnknownPeerIsRefusedAndNamed(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		a.Interface.PeerID = "mallory" // b lists only "alpha"
	})
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("hi"))
	waitFor(t, 5*time.Second, "b to record the refusal", func() bool {
		r := p.b.dev.Status().Refusals
		return len(r) == 1 && r[0].PeerID == "mallory" && r[0].Reason == "unknown peer id"
	})
	if s := p.a.peerStatus(t); s.SessionID != "" {
		t.Fatalf("a has a session %s with b", s.SessionID)
	}
}

func TestCipherMismatchIsExplainedOnBothSides(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		a.Session.Cipher = handshake.PreferChaCha20Poly1305
		b.Session.Cipher = handshake.PreferAES256GCM
	})
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("hi"))
	waitFor(t, 5*time.Second, "both sides to explain the mismatch", func() bool {
		a, b := p.a.peerStatus(t), p.b.peerStatus(t)
		return bytes.Contains([]byte(a.LastError), []byte("cipher")) && bytes.Contains([]byte(b.LastError), []byte("cipher"))
	})
	if s := p.a.peerStatus(t); s.SessionID != "" {
		t.Fatalf("a has a session despite the mismatch")
	}
}

// TestCipherMismatchRefusalReason: the responder's refusal reads "cipher
// mismatch: ...", as the other reasons read, not with the peer's ID in
// front ("peer \"alpha\": cipher mismatch: ..."): the ID is the refusal's
// own field, and the metrics take the text before the first ':' as the
// reason label, which would be `peer_"alpha"`, one label per peer,
// instead of cipher_mismatch.
func TestCipherMismatchRefusalReason(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		a.Session.Cipher = handshake.PreferChaCha20Poly1305
		b.Session.Cipher = handshake.PreferAES256GCM
	})
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("hi"))
	waitFor(t, 5*time.Second, "b to record the refusal", func() bool { return len(p.b.dev.Status().Refusals) > 0 })
	r := p.b.dev.Status().Refusals[0]
	if r.PeerID != "alpha" || !strings.HasPrefix(r.Reason, "cipher mismatch: ") {
		t.Fatalf("refusal %+v; want peer alpha, reason \"cipher mismatch: ...\"", r)
	}
}

func TestReloadKeepsUnchangedPeerSession(t *testing.T) {
	p := newPair(t, nil)
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("x"))
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	before := p.a.peerStatus(t).SessionID

	third := mustKey(t)
	cfg := *p.a.cfg
	cfg.Peers = append(append([]conf.Peer{}, cfg.Peers...), conf.Peer{ID: "gamma", PublicKey: third.PublicKey(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.3/32")}})
	if err := p.a.dev.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	st := p.a.dev.Status()
	if len(st.Peers) != 2 || st.Peers[0].SessionID != before {
		t.Fatalf("after reload: %d peers, session %q, want 2 and %q", len(st.Peers), st.Peers[0].SessionID, before)
	}
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)

	bad := cfg
	bad.Interface.PeerID = "renamed"
	// The key by its name, not in brackets: "[peer_id]" reads as a table.
	if err := p.a.dev.Reload(&bad); err == nil {
		t.Fatal("reload changing peer_id was accepted")
	} else if msg := err.Error(); !strings.Contains(msg, "cannot change peer_id on a running tunnel") || strings.Contains(msg, "[") {
		t.Errorf("reload changing peer_id: %q; want it named as a key, peer_id", msg)
	}
	if got := p.a.dev.Status(); got.PeerID != "alpha" || len(got.Peers) != 2 {
		t.Fatalf("failed reload changed the running config: %+v", got)
	}
}
