package handshake

import "testing"

// TestResponderRemembersStaticStatic: the responder keeps ss only for a
// peer that proved its key, the remembered value gives the same sessions
// as computing it, and Forget and Zero erase it.
func TestResponderRemembersStaticStatic(t *testing.T) {
	clk := newFakeClock()
	a, b, m := newHost(t, "site-a", clk), newHost(t, "site-b", clk), newHost(t, "mallory", clk)
	a.know(b)
	b.know(a)
	m.know(b)
	if b.resp.ss == nil {
		t.Fatal("an in-memory key has no memo")
	}

	// A stranger (unknown ID) and a known ID with another key: the curve
	// work is done, nothing is remembered.
	_, msg := m.initiate(t, b, 1)
	if _, _, err := b.resp.ConsumeInitiation(msg, 2); err == nil {
		t.Fatal("unknown peer accepted")
	}
	b.peers["mallory"] = PeerInfo{PublicKey: a.pub, ID: "mallory"} // mallory's ID, a's key
	clk.Advance(InitiationMinInterval)
	_, msg = m.initiate(t, b, 3)
	wantErr(t, func() error { _, _, err := b.resp.ConsumeInitiation(msg, 4); return err }(), ErrKeyMismatch, "known ID, other key")
	if n := b.resp.ss.len(); n != 0 {
		t.Fatalf("%d entries remembered for peers that did not prove their key", n)
	}

	// First handshake computes ss and remembers it; the second uses it.
	for i := range 2 {
		sa, sb := handshake(t, clk, a, b)
		if sa.SendKey != sb.RecvKey || sa.RecvKey != sb.SendKey {
			t.Fatalf("handshake %d: the two sides derived different keys", i+1)
		}
		if n := b.resp.ss.len(); n != 1 {
			t.Fatalf("handshake %d: %d entries remembered, want 1", i+1, n)
		}
	}
	want, _ := MemoryKey(b.cfg.PrivateKey).SharedSecret(a.pub)
	e := b.resp.ss.byID["site-a"]
	if e == nil || e.ss != want {
		t.Fatal("the remembered value is not X25519(b, a)")
	}

	b.resp.Forget("site-a")
	if b.resp.ss.len() != 0 || e.ss != ([32]byte{}) {
		t.Fatal("Forget left the secret in memory")
	}
	handshake(t, clk, a, b)
	e = b.resp.ss.byID["site-a"]
	b.resp.Zero()
	if b.resp.ss.len() != 0 || e.ss != ([32]byte{}) {
		t.Fatal("Zero left the secret in memory")
	}
	// Zero is the end of the responder (the interface closed): its copy of
	// the private key is gone too, so it answers nothing any more
	// (TestResponderZeroOverwritesItsKeyCopy).
}
