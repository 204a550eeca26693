package handshake

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

var (
	addrA = netip.MustParseAddrPort("198.18.0.1:51820")
	addrB = netip.MustParseAddrPort("198.18.0.2:51820")
)

// TestCookieRoundTrip walks the whole DoS path the tunnel runs, with an
// injected clock: under load an initiation without mac2 gets a cookie reply,
// the retry carries mac2 and is accepted; the cookie is bound to the address.
func TestCookieRoundTrip(t *testing.T) {
	clk, a, b := pair(t)
	load := NewLoadMonitor(4, clk.Now)
	limiter := NewRateLimiter(clk.Now)
	gen := NewCookieGenerator(b.pub, clk.Now)
	clk.Advance(time.Second)

	if load.UnderLoad(3) {
		t.Fatal("under load below the threshold")
	}
	if !load.UnderLoad(4) {
		t.Fatal("not under load at the threshold")
	}
	in, err := NewInitiation(a.cfg, a.infoOf(b), 7)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	gen.AddMACs(msg)
	if !isZero(msg[initOffMAC2:]) {
		t.Fatal("mac2 set without a cookie")
	}
	if !b.checker.CheckMAC1(msg) {
		t.Fatal("mac1")
	}
	if b.checker.CheckMAC2(msg, addrA) {
		t.Fatal("CheckMAC2 accepts an all-zero mac2")
	}
	reply, err := b.checker.CreateReply(msg, addrA)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != CookieReplySize {
		t.Fatalf("cookie reply is %d bytes", len(reply))
	}
	if typ, ok := MessageType(reply); !ok || typ != MessageTypeCookieReply {
		t.Fatal("cookie reply header")
	}
	// A flipped byte anywhere in the reply fails.
	for i := HeaderLen; i < len(reply); i++ {
		r := bytes.Clone(reply)
		r[i] ^= 1
		wantErr(t, gen.ConsumeReply(r), ErrBadCookie, "flipped cookie reply")
	}
	if err := gen.ConsumeReply(reply); err != nil {
		t.Fatal(err)
	}
	wantErr(t, gen.ConsumeReply(reply), ErrNoCookieWaiting, "cookie reply replayed")

	// The retry carries mac2 and passes, still under load (within 1 s).
	clk.Advance(500 * time.Millisecond)
	if !load.UnderLoad(0) {
		t.Fatal("load released before LoadHoldTime")
	}
	msg = in.Message()
	gen.AddMACs(msg)
	if !b.checker.CheckMAC1(msg) || !b.checker.CheckMAC2(msg, addrA) {
		t.Fatal("retry with cookie rejected")
	}
	// The same cookie from another address, or another port, is refused.
	if b.checker.CheckMAC2(msg, addrB) {
		t.Fatal("cookie accepted from another address")
	}
	if b.checker.CheckMAC2(msg, netip.AddrPortFrom(addrA.Addr(), 51821)) {
		t.Fatal("cookie accepted from another port")
	}
	// A flipped mac2 byte is refused.
	for i := initOffMAC2; i < InitiationSize; i++ {
		m := bytes.Clone(msg)
		m[i] ^= 1
		if b.checker.CheckMAC2(m, addrA) {
			t.Fatalf("flipped mac2 byte %d accepted", i)
		}
	}
	if !limiter.Allow(addrA.Addr()) {
		t.Fatal("rate limiter refuses the first initiation")
	}
	resp, sb, err := b.resp.ConsumeInitiation(msg, 8)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := in.ConsumeResponse(resp)
	if err != nil || sa.SendKey != sb.RecvKey {
		t.Fatalf("handshake after cookie: %v", err)
	}

	// The load ends one second after the last loaded report.
	clk.Advance(LoadHoldTime)
	if load.UnderLoad(0) {
		t.Fatal("still under load after LoadHoldTime")
	}

	// Cookies age out on both sides: the initiator stops sending mac2, and
	// the responder's secret has rotated, so an old mac2 is refused.
	clk.Advance(CookieLifetime)
	if b.checker.CheckMAC2(msg, addrA) {
		t.Fatal("cookie accepted after the secret rotated")
	}
	m := in.Message()
	gen.AddMACs(m)
	if !isZero(m[initOffMAC2:]) {
		t.Fatal("initiator still uses an expired cookie")
	}
	// A new reply uses a new secret: the old cookie's mac2 does not match it.
	if _, err := b.checker.CreateReply(m, addrA); err != nil {
		t.Fatal(err)
	}
	if b.checker.CheckMAC2(msg, addrA) {
		t.Fatal("old cookie valid under the new secret")
	}
}

// A cookie reply answers one specific initiation: it does not open for
// another (its AAD is that initiation's mac1), nor for another responder key.
func TestCookieReplyBinding(t *testing.T) {
	clk, a, b := pair(t)
	gen := NewCookieGenerator(b.pub, clk.Now)
	_, m1 := a.initiate(t, b, 1)
	_, m2 := a.initiate(t, b, 2)
	gen.AddMACs(m2) // the generator's last message is m2
	reply, err := b.checker.CreateReply(m1, addrA)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, gen.ConsumeReply(reply), ErrBadCookie, "reply to another initiation")

	c := newHost(t, "site-c", clk)
	reply, _ = c.checker.CreateReply(m2, addrA)
	wantErr(t, gen.ConsumeReply(reply), ErrBadCookie, "reply sealed by another responder")

	fresh := NewCookieGenerator(b.pub, clk.Now)
	reply, _ = b.checker.CreateReply(m2, addrA)
	wantErr(t, fresh.ConsumeReply(reply), ErrNoCookieWaiting, "reply with nothing sent")

	if _, err := b.checker.CreateReply([]byte{1, 1, 0, 0}, addrA); err == nil {
		t.Fatal("CreateReply accepted a truncated message")
	}
	// AddMACs leaves messages without MACs alone, instead of panicking.
	short := []byte{1, 1, 0, 0, 5}
	gen.AddMACs(short)
	if !bytes.Equal(short, []byte{1, 1, 0, 0, 5}) {
		t.Fatal("AddMACs changed a malformed message")
	}
}

func TestCookieIPv6And4in6(t *testing.T) {
	clk, a, b := pair(t)
	gen := NewCookieGenerator(b.pub, clk.Now)
	_, msg := a.initiate(t, b, 1)
	v6 := netip.MustParseAddrPort("[fd00::1]:4000")
	gen.AddMACs(msg)
	reply, _ := b.checker.CreateReply(msg, v6)
	if err := gen.ConsumeReply(reply); err != nil {
		t.Fatal(err)
	}
	gen.AddMACs(msg)
	if !b.checker.CheckMAC2(msg, v6) || b.checker.CheckMAC2(msg, netip.MustParseAddrPort("[fd00::2]:4000")) {
		t.Fatal("IPv6 cookie binding")
	}
	// A 4-in-6 mapped source is the same source as its IPv4 form.
	gen.AddMACs(msg)
	reply, _ = b.checker.CreateReply(msg, addrA)
	if err := gen.ConsumeReply(reply); err != nil {
		t.Fatal(err)
	}
	gen.AddMACs(msg)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(addrA.Addr().As16()), addrA.Port())
	if !b.checker.CheckMAC2(msg, mapped) {
		t.Fatal("4-in-6 mapped source not recognised")
	}
}

func TestRateLimiterTokenBucket(t *testing.T) {
	clk := newFakeClock()
	r := NewRateLimiter(clk.Now)
	ip := addrA.Addr()
	for i := 0; i < RateLimitBurst; i++ {
		if !r.Allow(ip) {
			t.Fatalf("burst initiation %d refused", i)
		}
	}
	if r.Allow(ip) {
		t.Fatal("initiation beyond the burst allowed")
	}
	if !r.Allow(addrB.Addr()) {
		t.Fatal("another source shares the bucket")
	}
	clk.Advance(time.Second/RateLimitPerSecond - time.Nanosecond)
	if r.Allow(ip) {
		t.Fatal("token refilled early")
	}
	clk.Advance(time.Nanosecond)
	if !r.Allow(ip) || r.Allow(ip) {
		t.Fatal("want exactly one token after 1/rate")
	}
	// Steady state: RateLimitPerSecond a second, no more.
	clk.Advance(10 * time.Second)
	allowed := 0
	for i := 0; i < 1000; i++ {
		if r.Allow(ip) {
			allowed++
		}
		clk.Advance(time.Millisecond)
	}
	if want := RateLimitBurst + RateLimitPerSecond; allowed < want-1 || allowed > want+1 {
		t.Fatalf("%d allowed in one second, want about %d", allowed, want)
	}
	// IPv6 sources share a bucket per /64.
	for i := 0; i < RateLimitBurst; i++ {
		r.Allow(netip.MustParseAddr("fd00:0:0:1::1"))
	}
	if r.Allow(netip.MustParseAddr("fd00:0:0:1:ffff:ffff:ffff:ffff")) {
		t.Fatal("same /64 has its own bucket")
	}
	if !r.Allow(netip.MustParseAddr("fd00:0:0:2::1")) {
		t.Fatal("other /64 shares the bucket")
	}
}

func TestRateLimiterBoundedMemory(t *testing.T) {
	clk := newFakeClock()
	r := NewRateLimiter(clk.Now)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	for i := 0; i < rateLimitMaxEntries; i++ {
		r.Allow(ip(i))
	}
	if r.Len() != rateLimitMaxEntries {
		t.Fatalf("%d entries", r.Len())
	}
	// Table full, every bucket still draining: a new source is refused.
	if r.Allow(netip.MustParseAddr("198.19.0.1")) {
		t.Fatal("new source allowed past the table bound")
	}
	// Once buckets have refilled they are forgotten and new sources fit.
	clk.Advance(time.Second)
	if !r.Allow(netip.MustParseAddr("198.19.0.1")) {
		t.Fatal("new source refused after old buckets refilled")
	}
	if r.Len() > rateLimitMaxEntries {
		t.Fatalf("table grew past its bound: %d", r.Len())
	}
}

func TestLoadMonitorAlways(t *testing.T) {
	if !NewLoadMonitor(0, nil).UnderLoad(0) {
		t.Fatal("threshold 0 should mean always under load")
	}
}
