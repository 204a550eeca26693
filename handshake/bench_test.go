package handshake

import (
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
)

// BenchmarkHandshake is one complete handshake, both sides, as the tunnel runs
// it: build message 1, MACs, mac1 check, responder, mac1 check, initiator.
// Compare with BenchmarkX25519PerHandshake: the difference is our overhead.
func BenchmarkHandshake(b *testing.B) {
	clk, ha, hb := pair(b)
	gen := NewCookieGenerator(hb.pub, clk.Now)
	info := ha.infoOf(hb)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		clk.Advance(time.Second) // past the per-peer rate limit
		in, err := NewInitiation(ha.cfg, info, uint32(i))
		if err != nil {
			b.Fatal(err)
		}
		msg := in.Message()
		gen.AddMACs(msg)
		if !hb.checker.CheckMAC1(msg) {
			b.Fatal("mac1")
		}
		resp, _, err := hb.resp.ConsumeInitiation(msg, uint32(i))
		if err != nil {
			b.Fatal(err)
		}
		if !ha.checker.CheckMAC1(resp) {
			b.Fatal("mac1")
		}
		if _, err := in.ConsumeResponse(resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
}

// BenchmarkX25519PerHandshake is the bare curve work of one handshake (both
// sides): two ephemeral key generations (base-point multiplications) and
// eight Diffie-Hellman operations (es, ss on each side; ee, se on each side).
func BenchmarkX25519PerHandshake(b *testing.B) {
	priv := make([]byte, 32)
	priv[0] = 1
	pub, _ := curve25519.X25519(priv, curve25519.Basepoint)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 2; j++ {
			if _, err := curve25519.X25519(priv, curve25519.Basepoint); err != nil {
				b.Fatal(err)
			}
		}
		for j := 0; j < 8; j++ {
			if _, err := curve25519.X25519(priv, pub); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
}

// BenchmarkCheckMAC1 is the cost of dropping a flood of junk initiations.
func BenchmarkCheckMAC1(b *testing.B) {
	clk, ha, hb := pair(b)
	_ = clk
	_, msg := ha.initiate(b, hb, 1)
	msg[10] ^= 1 // forged: fails mac1
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if hb.checker.CheckMAC1(msg) {
			b.Fatal("forged mac1 accepted")
		}
	}
}

// BenchmarkCookieReply is the cost of answering an initiation under load.
func BenchmarkCookieReply(b *testing.B) {
	clk, ha, hb := pair(b)
	_ = clk
	_, msg := ha.initiate(b, hb, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := hb.checker.CreateReply(msg, addrA); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResponderFull is the responder's side of a full handshake only:
// mac1 check and ConsumeInitiation (message 1 in, message 2 out). The
// initiations are made before the timer starts.
func BenchmarkResponderFull(b *testing.B) {
	clk, ha, hb := pair(b)
	gen := NewCookieGenerator(hb.pub, clk.Now)
	info := ha.infoOf(hb)
	// The responder's clock steps a second per reading: each initiation is
	// past the per-peer rate limit though all are consumed in a row.
	t := clk.Now()
	hb.cfg.Now = func() time.Time { t = t.Add(time.Second); return t }
	const batch = 256
	msgs := make([][]byte, batch)
	for i := 0; i < b.N; i += batch {
		b.StopTimer()
		for j := range msgs {
			clk.Advance(time.Second) // past the per-peer rate limit
			in, err := NewInitiation(ha.cfg, info, uint32(j))
			if err != nil {
				b.Fatal(err)
			}
			msgs[j] = in.Message()
			gen.AddMACs(msgs[j])
		}
		b.StartTimer()
		for j := 0; j < batch && i+j < b.N; j++ {
			if !hb.checker.CheckMAC1(msgs[j]) {
				b.Fatal("mac1")
			}
			if _, _, err := hb.resp.ConsumeInitiation(msgs[j], uint32(j)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
