package handshake

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUnknownPeer(t *testing.T) {
	clk, a, b := pair(t)
	delete(b.peers, "site-a")
	clk.Advance(time.Second)
	_, msg := a.initiate(t, b, 1)
	_, _, err := b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrUnknownPeer, "unknown peer")
	var pe *PeerError
	if !errors.As(err, &pe) || pe.PeerID != "site-a" {
		t.Fatalf("refusal does not name the claimed ID: %v", err)
	}
}

func TestNoPeersConfigured(t *testing.T) {
	clk, a, b := pair(t)
	b.cfg.Peers = nil
	clk.Advance(time.Second)
	_, msg := a.initiate(t, b, 1)
	_, _, err := b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrUnknownPeer, "no PeerLookup")
}

func TestKnownIDWrongKey(t *testing.T) {
	clk, a, b := pair(t)
	// mallory claims to be site-a with her own key.
	m := newHost(t, "site-a", clk)
	clk.Advance(time.Second)
	_, msg := m.initiate(t, b, 1)
	_, _, err := b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrKeyMismatch, "known ID, other key")
	if !strings.Contains(err.Error(), `"site-a"`) {
		t.Fatalf("error does not name the claimed ID: %v", err)
	}
	_ = a
}

func TestWrongResponderKey(t *testing.T) {
	clk, a, b := pair(t)
	c := newHost(t, "site-c", clk)
	clk.Advance(time.Second)
	// a believes b's key is c's: mac1 is keyed by the wrong key, so b drops it cheaply.
	in, err := NewInitiation(a.cfg, PeerInfo{PublicKey: c.pub}, 1)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	NewCookieGenerator(c.pub, clk.Now).AddMACs(msg)
	if b.checker.CheckMAC1(msg) {
		t.Fatal("CheckMAC1 accepts a message keyed for someone else")
	}
	_, _, err = b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrBadMAC1, "wrong responder key")
	// Even with mac1 forged for b's key, Noise cannot decrypt it.
	fixMAC1(msg, b.pub)
	_, _, err = b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrDecrypt, "wrong responder key, mac1 forged")
}

func TestReplayAndStaleTimestamp(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	_, older := a.initiate(t, b, 1)
	_, newer := a.initiate(t, b, 2)
	if _, _, err := b.resp.ConsumeInitiation(newer, 10); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	_, _, err := b.resp.ConsumeInitiation(newer, 11)
	wantErr(t, err, ErrReplay, "message 1 replayed")
	_, _, err = b.resp.ConsumeInitiation(older, 12)
	wantErr(t, err, ErrStaleTimestamp, "older message 1")
	if errors.Is(err, ErrReplay) {
		t.Fatalf("an older timestamp reported as an exact replay: %v", err)
	}
	// Forget (peer removed and re-added on reload) clears the state.
	b.resp.Forget("site-a")
	if _, _, err := b.resp.ConsumeInitiation(older, 13); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

func TestTimestampSurvivesClockStepBack(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Hour)
	handshake(t, clk, a, b)
	clk.Advance(-30 * time.Minute) // NTP steps the clock back
	handshake(t, clk, a, b)        // still newer for b
}

func TestPerPeerRateLimit(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	_, m1 := a.initiate(t, b, 1)
	_, m2 := a.initiate(t, b, 2)
	_, m3 := a.initiate(t, b, 3)
	if _, _, err := b.resp.ConsumeInitiation(m1, 10); err != nil {
		t.Fatal(err)
	}
	clk.Advance(InitiationMinInterval - time.Millisecond)
	_, _, err := b.resp.ConsumeInitiation(m2, 11)
	wantErr(t, err, ErrRateLimited, "second initiation within 20 ms")
	clk.Advance(time.Millisecond)
	if _, _, err := b.resp.ConsumeInitiation(m3, 12); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

func TestPeerErrorQuotesUntrustedID(t *testing.T) {
	err := &PeerError{PeerID: "evil\nFAKE LOG LINE", Err: ErrUnknownPeer}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("claimed ID printed raw: %q", err.Error())
	}
}

func TestConcurrentResponder(t *testing.T) {
	clk := newFakeClock()
	b := newHost(t, "hub", clk)
	const n = 8
	done := make(chan error, n)
	spokes := make([]*host, n)
	for i := range spokes {
		spokes[i] = newHost(t, "spoke-"+string(rune('a'+i)), clk)
		b.know(spokes[i])
	}
	for _, a := range spokes {
		go func() {
			for j := 0; j < 5; j++ {
				in, msg := a.initiate(t, b, uint32(j))
				resp, _, err := b.resp.ConsumeInitiation(msg, uint32(100+j))
				if err != nil && !errors.Is(err, ErrRateLimited) {
					done <- err
					return
				}
				if err == nil {
					if _, err := in.ConsumeResponse(resp); err != nil {
						done <- err
						return
					}
				}
				clk.Advance(InitiationMinInterval)
			}
			done <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
