package tunnel

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/handshake"
)

// forgedResponse is a response of type typ to receiver index idx: random
// bytes with a valid mac1, which anyone who knows pub can compute.
func forgedResponse(t *testing.T, typ byte, pub handshake.PublicKey, idx uint32) []byte {
	t.Helper()
	msg := make([]byte, handshake.ResponseSize) // == ResumptionResponseSize
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	msg[0], msg[1], msg[2], msg[3] = typ, handshake.ProtocolVersion, 0, 0
	binary.LittleEndian.PutUint32(msg[4:], idx) // the receiver index
	handshake.NewCookieGenerator(pub, nil).AddMACs(msg)
	return msg
}

// While a responder works on an initiation, the index it reserved for the
// answer names no peer yet. A forged response naming it must be dropped and
// counted, by the worker too (the intake checks first; the index may change
// hands between the two), not dereference the missing peer.
func TestResponseToAResponderIndexIsDropped(t *testing.T) {
	priv := mustKey(t)
	for _, typ := range []byte{handshake.MessageTypeResponse, handshake.MessageTypeResumptionResponse} {
		d := &Device{indices: newIndexTable()}
		idx := d.indices.reserve(nil) // as handleInitiation and handleResumption do
		d.handleResponse(handshakeMessage{typ: typ, msg: forgedResponse(t, typ, priv.PublicKey(), idx),
			from: &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("198.18.0.66:4444")}})
		if got := d.drops[dropUnknownIndex].Load(); got != 1 {
			t.Errorf("type %d: unknown-index drops = %d, want 1", typ, got)
		}
	}
}

// heldKey is a static key whose next DH waits until released, so a test
// can act while a responder is inside its static-key work.
type heldKey struct {
	handshake.StaticKey
	mu               sync.Mutex
	armed            bool
	entered, release chan struct{}
}

func (k *heldKey) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	k.mu.Lock()
	armed := k.armed
	k.armed = false
	k.mu.Unlock()
	if armed {
		close(k.entered)
		<-k.release
	}
	return k.StaticKey.SharedSecret(peer)
}

// The same through the network: a stranger's initiation holds one of b's
// workers in its static-key DH (a slow token makes that window long), and
// a forged response guesses the index b reserved for it (the test reads
// it). b drops it, and the tunnel still works.
func TestForgedResponseDuringAResponderHandshake(t *testing.T) {
	var key *heldKey
	p := newPairOpts(t, nil, 0, nil, func(h *host, o *Options) {
		if h.cfg.Interface.PeerID == "beta" {
			key = &heldKey{StaticKey: handshake.MemoryKey(h.key), entered: make(chan struct{}), release: make(chan struct{})}
			o.StaticKey = key
		}
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(key.release)
		}
	}
	defer release()
	bPub := p.b.key.PublicKey()
	stranger, to := netip.MustParseAddrPort("198.18.0.99:1234"), netip.MustParseAddrPort(p.b.under)

	init := make([]byte, handshake.InitiationSize)
	if _, err := rand.Read(init); err != nil {
		t.Fatal(err)
	}
	init[0], init[1], init[2], init[3] = handshake.MessageTypeInitiation, handshake.ProtocolVersion, 0, 0
	handshake.NewCookieGenerator(bPub, nil).AddMACs(init)
	key.mu.Lock()
	key.armed = true
	key.mu.Unlock()
	p.net.inject(stranger, to, init)
	select {
	case <-key.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("b never reached its static-key DH for the stranger's initiation")
	}

	var idx uint32
	p.b.dev.indices.mu.RLock()
	for i, e := range p.b.dev.indices.m {
		if e.peer == nil {
			idx = i
		}
	}
	p.b.dev.indices.mu.RUnlock()
	if idx == 0 {
		t.Fatal("no index reserved for the initiation in progress")
	}
	before := p.b.dev.drops[dropUnknownIndex].Load()
	p.net.inject(stranger, to, forgedResponse(t, handshake.MessageTypeResponse, bPub, idx))
	p.net.inject(stranger, to, forgedResponse(t, handshake.MessageTypeResumptionResponse, bPub, idx))
	waitFor(t, 5*time.Second, "both forged responses dropped as naming no handshake of b's", func() bool {
		return p.b.dev.drops[dropUnknownIndex].Load() >= before+2
	})
	release()
	p.exchange(t, 1)
}
