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

// forgetOnLookup is a PeerLookup that answers from peers and then, before
// the responder uses the answer, has the peer forgotten: a reload that
// removes the peer (tunnel.Device.Reload: Host.Forget) between the
// responder's lookup and the end of its handshake.
type forgetOnLookup struct {
	peers  peerMap
	forget func(id string)
}

func (l forgetOnLookup) LookupPeer(id []byte) (PeerInfo, error) {
	info, err := l.peers.LookupPeer(id)
	l.forget(string(id))
	return info, err
}

// TestForgetDuringHandshakeKeepsNoSecret: a peer forgotten while an
// initiation of its was being answered leaves no static-static secret in
// the memo. The handshake under way still completes (its lookup answered
// before the removal, and the holder refuses the session for a removed
// peer); but the secret it computed must not be remembered after the
// Forget that was to erase it, where nothing would erase it again until
// the interface closes.
func TestForgetDuringHandshakeKeepsNoSecret(t *testing.T) {
	clk, a, b := pair(t)
	b.cfg.Peers = forgetOnLookup{peers: b.peers, forget: b.resp.Forget}
	handshake(t, clk, a, b)
	if n := b.resp.ss.len(); n != 0 {
		t.Fatalf("%d entries remembered for a peer forgotten during its handshake, want 0", n)
	}
	// Once the forgetting is over, the peer's next handshake remembers
	// its secret again.
	b.cfg.Peers = b.peers
	handshake(t, clk, a, b)
	if n := b.resp.ss.len(); n != 1 {
		t.Fatalf("%d entries remembered after a handshake with no Forget, want 1", n)
	}
}
