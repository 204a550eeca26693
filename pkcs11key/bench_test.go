//go:build cgo

package pkcs11key

import (
	"testing"
	"time"

	"stunnel/handshake"
)

// BenchmarkHandshake: full handshakes (message 1 and 2, both sides in this
// process) with site-a's key in memory against in the token. Each
// handshake costs site-a two static-key DHs; in the token case those are
// token operations on the one open session.
//
//	nice -n 19 go test -run=NONE -bench=Handshake -benchtime=2s ./pkcs11key/
func BenchmarkHandshake(b *testing.B) {
	bPriv, _ := handshake.GeneratePrivateKey(nil)
	aPriv, _ := handshake.GeneratePrivateKey(nil)
	run := func(b *testing.B, static handshake.StaticKey) {
		aPub := static.Public()
		aCfg := &handshake.Config{PeerID: []byte("site-a"), Static: static}
		bCfg := &handshake.Config{PeerID: []byte("site-b"), PrivateKey: bPriv,
			Peers: peers{"site-a": {PublicKey: aPub, ID: "site-a"}}}
		// A fresh clock second per handshake: the responder's per-peer
		// rate limit and replay check stay out of the measurement.
		now := time.Unix(1_900_000_000, 0)
		bCfg.Now = func() time.Time { return now }
		aCfg.Now = bCfg.Now
		r := handshake.NewResponder(bCfg)
		info := handshake.PeerInfo{PublicKey: bPriv.PublicKey(), ID: "site-b"}
		gen := handshake.NewCookieGenerator(bPriv.PublicKey(), nil)
		b.ResetTimer()
		for b.Loop() {
			now = now.Add(time.Second)
			in, err := handshake.NewInitiation(aCfg, info, 1)
			if err != nil {
				b.Fatal(err)
			}
			msg := in.Message()
			gen.AddMACs(msg)
			reply, _, err := r.ConsumeInitiation(msg, 2)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := in.ConsumeResponse(reply); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	}
	b.Run("memory", func(b *testing.B) { run(b, handshake.MemoryKey(aPriv)) })
	b.Run("token", func(b *testing.B) {
		_, _, k := newTokenKey(b)
		before := k.Ops()
		run(b, k)
		b.ReportMetric(float64(k.Ops()-before)/float64(b.N), "token-ops/handshake")
	})
}

// BenchmarkSharedSecret: one static-key X25519, in memory against in the
// token (C_DeriveKey, reading the derived secret, destroying it).
func BenchmarkSharedSecret(b *testing.B) {
	peer, _ := handshake.GeneratePrivateKey(nil)
	run := func(b *testing.B, k handshake.StaticKey) {
		for b.Loop() {
			if _, err := k.SharedSecret(peer.PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
	}
	priv, _ := handshake.GeneratePrivateKey(nil)
	b.Run("memory", func(b *testing.B) { run(b, handshake.MemoryKey(priv)) })
	b.Run("token", func(b *testing.B) {
		_, _, k := newTokenKey(b)
		run(b, k)
	})
}
