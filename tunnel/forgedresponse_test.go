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

// holdGate, once armed, holds the next caller of hold until open, so a
// test can act while that caller (a handshake worker) is stopped there.
type holdGate struct {
	mu      sync.Mutex
	armed   bool          // guarded by mu
	entered chan struct{} // closed when the armed caller arrives
	release chan struct{} // closed by open: the held caller goes on
	once    sync.Once
}

func newHoldGate() *holdGate {
	return &holdGate{entered: make(chan struct{}), release: make(chan struct{})}
}

// arm makes the next hold wait at the gate.
func (g *holdGate) arm() { g.mu.Lock(); g.armed = true; g.mu.Unlock() }

// hold is where the wrapped code calls in: it waits there if armed.
func (g *holdGate) hold() {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(g.entered)
		<-g.release
	}
}

// open lets the held caller (if any, now or later) go on; it may be
// called again.
func (g *holdGate) open() { g.once.Do(func() { close(g.release) }) }

// waitEntered fails the test with failure unless the armed caller
// arrives within timeout.
func (g *holdGate) waitEntered(t *testing.T, timeout time.Duration, failure string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(timeout):
		t.Fatal(failure)
	}
}

// heldKey is a static key whose next DH, once armed, waits at its gate.
type heldKey struct {
	handshake.StaticKey
	gate *holdGate
}

func (k *heldKey) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	k.gate.hold()
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
			key = &heldKey{StaticKey: handshake.MemoryKey(h.key), gate: newHoldGate()}
			o.StaticKey = key
		}
	})
	defer key.gate.open()
	bPub := p.b.key.PublicKey()
	stranger, to := netip.MustParseAddrPort("198.18.0.99:1234"), netip.MustParseAddrPort(p.b.under)

	init := make([]byte, handshake.InitiationSize)
	if _, err := rand.Read(init); err != nil {
		t.Fatal(err)
	}
	init[0], init[1], init[2], init[3] = handshake.MessageTypeInitiation, handshake.ProtocolVersion, 0, 0
	handshake.NewCookieGenerator(bPub, nil).AddMACs(init)
	key.gate.arm()
	p.net.inject(stranger, to, init)
	key.gate.waitEntered(t, 10*time.Second, "b never reached its static-key DH for the stranger's initiation")

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
	key.gate.open()
	p.exchange(t, 1)
}
