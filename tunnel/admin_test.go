package tunnel

import (
	"errors"
	"testing"
	"time"
)

// exchange sends one packet each way and waits for both.
func (p *pair) exchange(t *testing.T, tag byte) {
	t.Helper()
	out := ipv4UDP("198.19.0.1", "198.19.0.2", []byte{tag, 1})
	p.a.tun.toTunnel <- out
	p.b.expect(t, out)
	back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte{tag, 2})
	p.b.tun.toTunnel <- back
	p.a.expect(t, back)
}

func TestRekeyPeerForcesAHandshakeOnFreshKeys(t *testing.T) {
	p := newPair(t, nil)
	p.exchange(t, 1)
	first := p.a.peerStatus(t)
	// Keys are seconds old, far from rekey_after; past RekeyTimeout after
	// the first initiation, the rate limit every handshake obeys.
	p.clock.Advance(6 * time.Second)
	if err := p.a.dev.RekeyPeer("beta"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a second handshake on both sides", func() bool {
		return p.a.peerStatus(t).Handshakes == 2 && p.b.peerStatus(t).Handshakes == 2
	})
	p.exchange(t, 2) // b confirms the new session by using it
	sa, sb := p.a.peerStatus(t), p.b.peerStatus(t)
	if sa.SessionID == first.SessionID || sa.SessionID != sb.SessionID {
		t.Errorf("session after rekey: a %q b %q, first %q", sa.SessionID, sb.SessionID, first.SessionID)
	}
	if err := p.a.dev.RekeyPeer("nobody"); !errors.Is(err, ErrNoPeer) {
		t.Errorf("RekeyPeer(unknown) = %v, want ErrNoPeer", err)
	}
}

func TestDisconnectPeerDropsSessionsAndAllowsANewOne(t *testing.T) {
	p := newPair(t, nil)
	p.exchange(t, 1)
	peer := p.a.dev.peers.Load().byID["beta"]
	_, cur, _ := peer.sess.Slots()
	if cur == nil {
		t.Fatal("no current keypair before disconnect")
	}
	if err := p.a.dev.DisconnectPeer("beta"); err != nil {
		t.Fatal(err)
	}
	if !cur.IsZeroed() {
		t.Error("the current keypair was not zeroed")
	}
	if s := p.a.peerStatus(t); s.SessionID != "" {
		t.Errorf("session still shown after disconnect: %q", s.SessionID)
	}
	p.clock.Advance(6 * time.Second)
	// The next packet starts a new handshake; traffic flows again.
	p.exchange(t, 2)
	if s := p.a.peerStatus(t); s.SessionID == "" || s.Handshakes < 2 {
		t.Errorf("no new session after disconnect: %+v", s)
	}
	if err := p.a.dev.DisconnectPeer("nobody"); !errors.Is(err, ErrNoPeer) {
		t.Errorf("DisconnectPeer(unknown) = %v, want ErrNoPeer", err)
	}
	p.a.dev.Close()
	if err := p.a.dev.DisconnectPeer("beta"); err == nil {
		t.Error("DisconnectPeer on a closed device succeeded")
	}
}
