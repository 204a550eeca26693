package session

import (
	"sync"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/waitfor"
)

// gateReg holds the Release of one index until told: it stops an Accept
// between installing its keypair (which drops the oldest one, released
// here) and recording that keypair as next and as the one its ticket is for.
type gateReg struct {
	*MapRegistry
	mu      sync.Mutex
	block   uint32        // guarded by mu: the index whose Release waits; 0 none
	entered chan struct{} // closed when the blocked Release starts waiting
	release chan struct{} // closed by the test to let it go on
}

func (g *gateReg) Release(idx uint32) {
	g.mu.Lock()
	b := g.block != 0 && g.block == idx
	if b {
		g.block = 0
	}
	g.mu.Unlock()
	if b {
		close(g.entered)
		<-g.release
	}
	g.MapRegistry.Release(idx)
}

// stubIssuer issues a ticket naming the session, and opens none.
type stubIssuer struct{}

func (stubIssuer) OpenTicket([]byte) (*handshake.TicketState, error) {
	return nil, handshake.ErrTicketInvalid
}
func (stubIssuer) ConsumeTicket([]byte, *handshake.TicketState) error { return nil }
func (stubIssuer) Issue(sess *handshake.Session, _, _ handshake.PublicKey, _ time.Time) ([]byte, error) {
	return append([]byte("ticket-for-"), sess.SessionID[:4]...), nil
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Two handshake workers accept two valid initiations of one peer at once,
// and the older Accept (A) records its keypair after the newer one (B) did
// everything. A's keypair was dropped by B's Install, so A must not become
// the next keypair nor the one the ticket is for: when the peer confirms
// B's keypair, its ticket is sent and the handshake is counted as B's
// (resumed or not). Before the fix A wrote last: no ticket, so the peer's
// next rekey was a full handshake, and a resumption counted as full.
func TestOverlappingAcceptsKeepTheNewerKeypairsTicket(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	b.host.SetTickets(stubIssuer{}, true, 0)
	g := &gateReg{MapRegistry: NewMapRegistry(), entered: make(chan struct{}), release: make(chan struct{})}
	bp := b.host.NewPeer(PeerConfig{ID: "a", PublicKey: a.host.PublicKey()}, g)

	answer := func(msg []byte) {
		idx := g.Reserve()
		_, sess, err := b.host.ConsumeInitiation(msg, idx)
		if err != nil {
			t.Error(err)
			return
		}
		if err := bp.Accept(sess, idx, now); err != nil {
			t.Error(err)
		}
	}
	msg0, _, _ := a.peer.Initiate(now, "x")
	answer(msg0)
	_, _, kp0 := bp.Slots()
	// Past the responder's per-peer initiation rate limit, between each.
	now = now.Add(time.Second)
	msgA, _, _ := a.peer.Initiate(now, "x")
	now = now.Add(time.Second)
	msgB, _, _ := a.peer.Initiate(now, "x")

	g.mu.Lock()
	g.block = kp0.LocalIndex // A's Install drops kp0: A waits there
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); answer(msgA) }()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "A's Accept held after its Install", func() bool { return closed(g.entered) })
	now = now.Add(time.Second)
	answer(msgB) // B's Accept runs entirely meanwhile, dropping A's keypair
	close(g.release)
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "A's Accept to return", func() bool { return closed(done) })

	_, _, next := bp.Slots()
	bp.mu.Lock()
	nextKP, ticketFor := bp.nextKP, bp.ticketFor
	bp.mu.Unlock()
	if nextKP != next || ticketFor != next {
		t.Fatalf("after overlapping Accepts nextKP=%p ticketFor=%p, want B's keypair %p", nextKP, ticketFor, next)
	}
	if promoted, _ := bp.Received(next, false, now); !promoted { // the peer confirms B's keypair
		t.Fatal("B's keypair not promoted")
	}
	if bp.TicketFor(next) == nil {
		t.Fatal("no ticket for the keypair the peer confirmed")
	}
}
