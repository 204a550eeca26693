package session

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/waitfor"
	"stunnel/rekey"
)

// gatedKey is a static key whose operations can be held, as a PKCS#11
// token's are while it works (or hangs, up to its 3 s bound).
type gatedKey struct {
	handshake.StaticKey
	armed   atomic.Bool
	entered chan struct{} // closed when an armed operation starts
	release chan struct{} // an armed operation returns once this is closed
}

func (k *gatedKey) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	if k.armed.CompareAndSwap(true, false) {
		close(k.entered)
		<-k.release
	}
	return k.StaticKey.SharedSecret(peer)
}

// TestAbandonDoesNotHoldTheLockThroughResponseCrypto: a response being
// consumed holds its initiation's lock through its public-key work (here a
// token operation that takes its time). Abandoning that initiation
// meanwhile (Clear at a disconnect or a stop; likewise a retry's Initiate
// and a give-up) must not wait for that work while it holds Peer.mu: the
// data path stamps the timers under Peer.mu (Sent, Received) for every
// batch, and a slow or forged handshake must not stall it (package doc).
func TestAbandonDoesNotHoldTheLockThroughResponseCrypto(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	// a's own key, behind the gate.
	cfg := *a.host.Config()
	key := &gatedKey{StaticKey: handshake.MemoryKey(cfg.PrivateKey), entered: make(chan struct{}), release: make(chan struct{})}
	cfg.PrivateKey, cfg.Static = handshake.PrivateKey{}, key
	a.host = NewHost(&cfg, rekey.DefaultPolicy())
	a.peer = a.host.NewPeer(PeerConfig{ID: "b", PublicKey: b.host.PublicKey()}, a.reg)

	msg, _, err := a.peer.Initiate(now, "198.18.0.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	resp := b.answer(t, msg, now)
	idx, _ := handshake.PeekResponseReceiver(resp)
	released := false
	unblock := func() {
		if !released {
			released = true
			close(key.release)
		}
	}
	defer unblock()

	key.armed.Store(true)
	consumed := make(chan error, 1)
	go func() { _, err := a.peer.ConsumeResponse(idx, resp, "198.18.0.2:51820", now); consumed <- err }()
	select {
	case <-key.entered: // the response's se DH, under the initiation's lock
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the response's static-key operation")
	}
	cleared := make(chan struct{})
	go func() { a.peer.Clear(); close(cleared) }()
	// Clear has reached the initiation: its index is released first.
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "Clear to abandon the initiation", func() bool {
		_, ok := a.reg.Lookup(idx)
		return !ok
	})
	sent := make(chan struct{})
	go func() { a.peer.Sent(true, now); close(sent) }()
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		unblock()
		t.Fatal("the data path's Sent waited 5s for a response's public-key work: Peer.mu was held through it")
	}
	unblock()
	<-cleared
	if err := <-consumed; !errors.Is(err, ErrNotPending) {
		t.Fatalf("the response of an abandoned initiation: %v, want ErrNotPending", err)
	}
	if a.peer.Current(now) != nil || a.peer.Initiating() {
		t.Fatal("a session or an initiation is left after Clear")
	}
}
