package securesession

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
	"stunnel/internal/waitfor"
	"stunnel/rekey"
)

// hub is a lossless in-memory datagram link whose client end can be
// replaced (a client that restarts), each end with its own Close.
type hub struct {
	toServer, toClient chan []byte
}

func newHub() *hub { return &hub{toServer: make(chan []byte, 1024), toClient: make(chan []byte, 1024)} }

// end is one side's Transport. Send waits for room rather than losing a
// message, so the test's counts are exact; Close unblocks it and Receive.
func (h *hub) end(out, in chan []byte) Transport {
	closed := make(chan struct{})
	var once sync.Once
	return Transport{
		Send: func(msg []byte) error {
			select {
			case out <- bytes.Clone(msg):
				return nil
			case <-closed:
				return net.ErrClosed
			}
		},
		Receive: func(buf []byte) (int, error) {
			select {
			case m := <-in:
				return copy(buf, m), nil
			case <-closed:
				return 0, net.ErrClosed
			}
		},
		Close: func() error { once.Do(func() { close(closed) }); return nil },
	}
}

// stalledServer is a Conn pair on a fake clock whose server application
// does not read: the client has sent ReceiveQueueLen+extra messages
// ("m0", "m1", ...), so the server's receive queue is full.
func stalledServer(t *testing.T, extra int) (h *hub, clk *fakeclock.Clock, clientCfg Config, client, server *Conn) {
	t.Helper()
	aKey, bKey := keys(t), keys(t)
	lookup := abLookup(aKey, bKey)
	policy := rekey.DefaultPolicy()
	policy.RekeyJitter = 0
	h, clk = newHub(), fakeclock.New(t0)
	server, err := Accept(Config{PeerID: "b", PrivateKey: bKey, Peers: lookup, Policy: policy, Now: clk.Now}, h.end(h.toClient, h.toServer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	clientCfg = Config{PeerID: "a", PrivateKey: aKey, Peers: lookup, Policy: policy, Now: clk.Now}
	client, err = Dial(clientCfg, "b", h.end(h.toServer, h.toClient))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range ReceiveQueueLen + extra {
		if err := client.Send(ctx, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("Send m%d: %v", i, err)
		}
	}
	return h, clk, clientCfg, client, server
}

// readQueued reads what the stalled server's queue holds: the oldest
// ReceiveQueueLen messages, in order.
func readQueued(t *testing.T, server *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range ReceiveQueueLen {
		m, err := server.Receive(ctx)
		if want := fmt.Sprintf("m%d", i); err != nil || string(m) != want {
			t.Fatalf("queued message %d: %q, %v; want %q", i, m, err, want)
		}
	}
}

// An application that stops reading must not stop its Conn's own
// machinery. The receive loop waited for room in the queue of received
// messages, so a rekey initiation behind the data was never answered and
// the peer's rekey stalled. Now data beyond the queue is dropped and
// counted, the rekey completes, and once the application reads again it
// gets the queued messages and then newer ones.
func TestConnRekeysWhileAppDoesNotRead(t *testing.T) {
	const extra = 10
	_, clk, _, client, server := stalledServer(t, extra)
	before := client.Session().SessionID()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	clk.Advance(rekey.DefaultRekeyAfterTime + time.Second)
	if err := client.Send(ctx, []byte("starts the rekey")); err != nil { // old key; the initiation goes first
		t.Fatal(err)
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "the rekey to complete while the server application does not read", func() bool {
		c, _ := client.Session().Handshakes()
		s, _ := server.Session().Handshakes()
		return c == 2 && s == 2 && server.Session().SessionID() == client.Session().SessionID()
	})
	if client.Session().SessionID() == before {
		t.Fatal("the session ID did not change with the rekey")
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "the messages beyond the queue to be counted", func() bool {
		return server.DroppedQueueFull.Load() == extra+1
	})
	if d := server.Dropped.Load(); d != 0 {
		t.Fatalf("Dropped = %d: a full queue is not a refused message", d)
	}

	readQueued(t, server)
	if err := client.Send(ctx, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	if m, err := server.Receive(ctx); err != nil || string(m) != "fresh" {
		t.Fatalf("after reading again: %q, %v; want the newer message", m, err)
	}
}

// The same for a peer that restarts: its fresh handshake is answered while
// the application does not read.
func TestConnAnswersRestartedPeerWhileAppDoesNotRead(t *testing.T) {
	const extra = 3
	h, clk, clientCfg, client, server := stalledServer(t, extra)
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "the server to see the messages beyond the queue", func() bool {
		return server.DroppedQueueFull.Load() == extra
	})
	client.Close() // the client restarts, with no session
	clk.Advance(time.Second)
	restarted, err := Dial(clientCfg, "b", h.end(h.toServer, h.toClient))
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := restarted.Send(ctx, []byte("after restart")); err != nil {
		t.Fatalf("the restarted client got no session while the server application does not read: %v", err)
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "the message beyond the queue to be counted", func() bool {
		return server.DroppedQueueFull.Load() == extra+1
	})

	readQueued(t, server)
	if err := restarted.Send(ctx, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	if m, err := server.Receive(ctx); err != nil || string(m) != "fresh" {
		t.Fatalf("after reading again: %q, %v; want the newer message", m, err)
	}
}
