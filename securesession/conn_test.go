package securesession

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/waitfor"
	"stunnel/rekey"
)

// The callback API over a stream: a Conn pair on loopback TCP exchanges
// messages both ways across several rekeys driven by its own timers.
func TestConnOverStreamWithRekeys(t *testing.T) {
	before := runtime.NumGoroutine()
	aKey, bKey := keys(t), keys(t)
	lookup := abLookup(aKey, bKey)
	// Short-lived keys, so the Conns rekey on their own within the test.
	policy := rekey.DefaultPolicy()
	policy.RekeyAfterTime, policy.RejectAfterTime = 600*time.Millisecond, 3*time.Second
	policy.KeepaliveTimeout, policy.RekeyTimeout, policy.RekeyJitter = 500*time.Millisecond, 500*time.Millisecond, 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	server, err := Accept(Config{PeerID: "b", PrivateKey: bKey, Peers: lookup, Policy: policy}, StreamTransport(cb))
	if err != nil {
		t.Fatal(err)
	}
	client, err := Dial(Config{PeerID: "a", PrivateKey: aKey, Peers: lookup, Policy: policy}, "b", StreamTransport(ca))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { // echo
		for {
			m, err := server.Receive(ctx)
			if err != nil {
				return
			}
			if server.Send(ctx, append([]byte("echo "), m...)) != nil {
				return
			}
		}
	}()
	sessions := map[[32]byte]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; len(sessions) < 3; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d sessions seen in 15 s: the Conn does not rekey by itself", len(sessions))
		}
		msg := fmt.Sprintf("m%d", i)
		if err := client.Send(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := client.Receive(ctx)
		if err != nil || string(got) != "echo "+msg {
			t.Fatalf("got %q, %v", got, err)
		}
		sessions[client.Session().SessionID()] = true
		time.Sleep(50 * time.Millisecond) // pace the traffic; the loop ends on a condition
	}
	if client.Session().PeerID() != "b" || server.Session().PeerID() != "a" {
		t.Fatal("wrong peer IDs")
	}
	client.Close()
	server.Close()
	waitGoroutines(t, before)
}

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A connected UDP socket reports the ICMP port unreachable of an earlier
// datagram as ECONNREFUSED on its next read. A Dial to a peer that is not
// up yet (or is restarting) must keep retrying like any lost datagram,
// not die of that read.
func TestPacketConnSurvivesPeerNotUpYet(t *testing.T) {
	aKey, bKey := keys(t), keys(t)
	lookup := abLookup(aKey, bKey)
	policy := rekey.DefaultPolicy()
	policy.RekeyTimeout, policy.RekeyJitter = 200*time.Millisecond, 0 // quick retries
	free, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.LocalAddr().String()
	free.Close() // nobody listens there now
	uc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := &refusalCounter{Conn: uc}
	client, err := Dial(Config{PeerID: "a", PrivateKey: aKey, Peers: lookup, Policy: policy}, "b", PacketTransport(rc))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitfor.Cond(t, 5*time.Second, 5*time.Millisecond, "the first initiation to bounce off the closed port", func() bool {
		return rc.refused.Load() > 0
	})

	// The peer comes up on that port: a buffer-API session on a plain socket.
	sc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	bob, err := New(Config{PeerID: "b", PrivateKey: bKey, Peers: lookup, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	got := make(chan string, 1)
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		buf := make([]byte, MaxFrame)
		for {
			n, from, err := sc.ReadFrom(buf)
			if err != nil {
				return
			}
			res, _ := bob.Unwrap(buf[:n])
			for _, m := range res.Send {
				sc.WriteTo(m, from)
			}
			if res.Data != nil {
				got <- string(res.Data)
			}
		}
	}()
	defer func() { sc.Close(); <-serverDone }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Send(ctx, []byte("made it")); err != nil {
		t.Fatalf("Send once the peer is up: %v", err)
	}
	select {
	case m := <-got:
		if m != "made it" {
			t.Fatalf("peer got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("the peer got nothing")
	}
}

// refusalCounter counts the ECONNREFUSED reads of a connected UDP socket,
// so a test can wait for a datagram to have bounced off a closed port.
type refusalCounter struct {
	net.Conn
	refused atomic.Int32
}

func (r *refusalCounter) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if errors.Is(err, syscall.ECONNREFUSED) {
		r.refused.Add(1)
	}
	return n, err
}

// pipeConns is a Dial/Accept pair over net.Pipe.
func pipeConns(t *testing.T) (client, server *Conn) {
	t.Helper()
	aKey, bKey := keys(t), keys(t)
	lookup := abLookup(aKey, bKey)
	x, y := net.Pipe()
	server, err := Accept(Config{PeerID: "b", PrivateKey: bKey, Peers: lookup}, StreamTransport(y))
	if err != nil {
		t.Fatal(err)
	}
	client, err = Dial(Config{PeerID: "a", PrivateKey: aKey, Peers: lookup}, "b", StreamTransport(x))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A peer that sends its last message and hangs up: the message arrived
// before the end of the stream, so Receive hands it out before it reports
// the end. (The receive loop had queued it; Receive then chose at random
// between it and the closed Conn.)
func TestConnReceiveKeepsLastMessageBeforeEOF(t *testing.T) {
	for i := range 20 {
		client, server := pipeConns(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := client.Send(ctx, []byte("last words")); err != nil {
			t.Fatal(err)
		}
		client.Close()
		select { // the server's transport ended: EOF after the message
		case <-server.done:
		case <-ctx.Done():
			t.Fatal("the server's receive loop did not see the end of the stream")
		}
		m, err := server.Receive(ctx)
		if err != nil || string(m) != "last words" {
			t.Fatalf("round %d: Receive after the peer hung up gave %q, %v; want the message it sent first", i, m, err)
		}
		if _, err := server.Receive(ctx); !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) {
			t.Fatalf("round %d: then %v, want ErrClosed and io.EOF", i, err)
		}
		cancel()
		server.Close()
	}
}

// After Close, Send and Receive return ErrClosed, as documented: not the
// Session's ErrSessionClosed, and not messages still queued (both came at
// random, from select choosing among ready cases).
func TestConnCallsAfterCloseReturnErrClosed(t *testing.T) {
	client, server := pipeConns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if err := client.Send(ctx, []byte("queued")); err != nil {
			t.Fatal(err)
		}
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "three messages queued at the server", func() bool { return len(server.incoming) == 3 })
	server.Close()
	for i := range 50 {
		if err := server.Send(ctx, []byte("late")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send %d after Close: %v, want ErrClosed", i, err)
		}
		if m, err := server.Receive(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Receive %d after Close: %q, %v, want ErrClosed", i, m, err)
		}
	}
}

// A Transport missing a function is refused by Dial and Accept: the Conn's
// goroutines would call it and panic, and a panic in a goroutine the
// caller does not own ends the whole program.
func TestConnRefusesIncompleteTransport(t *testing.T) {
	key := keys(t)
	cfg := Config{PeerID: "a", PrivateKey: key, Peers: LookupFunc(func(string) (handshake.PeerInfo, error) {
		return handshake.PeerInfo{PublicKey: key.PublicKey()}, nil
	})}
	send := func([]byte) error { return nil }
	receive := func([]byte) (int, error) { select {} }
	for _, tc := range []struct {
		tr   Transport
		want string
	}{
		{Transport{Receive: receive}, "Transport.Send is nil"},
		{Transport{Send: send}, "Transport.Receive is nil"},
	} {
		if _, err := Dial(cfg, "b", tc.tr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dial: %v, want %q", err, tc.want)
		}
		if _, err := Accept(cfg, tc.tr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Accept: %v, want %q", err, tc.want)
		}
	}
}

// A Transport.Receive that returns an impossible length ends the Conn with
// an error that says so, instead of a panic in the Conn's goroutine.
func TestConnReceiveImpossibleLengthEndsConn(t *testing.T) {
	key := keys(t)
	cfg := Config{PeerID: "a", PrivateKey: key, Peers: LookupFunc(func(string) (handshake.PeerInfo, error) {
		return handshake.PeerInfo{PublicKey: key.PublicKey()}, nil
	})}
	for _, n := range []int{MaxFrame + 1, -1} {
		c, err := Accept(cfg, Transport{
			Send:    func([]byte) error { return nil },
			Receive: func([]byte) (int, error) { return n, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("a length of %d did not end the Conn", n)
		}
		_, err = c.Receive(context.Background())
		if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), fmt.Sprintf("returned length %d", n)) {
			t.Errorf("Receive after a length of %d: %v", n, err)
		}
		c.Close()
	}
}

// switchLink is an in-memory datagram link between a client and a server
// Transport that drops everything while down.
type switchLink struct {
	up                 atomic.Bool
	toServer, toClient chan []byte
	closed             chan struct{}
	closeOnce          sync.Once
}

func newSwitchLink() *switchLink {
	return &switchLink{toServer: make(chan []byte, 64), toClient: make(chan []byte, 64), closed: make(chan struct{})}
}

func (l *switchLink) end(out, in chan []byte) Transport {
	return Transport{
		Send: func(msg []byte) error {
			if l.up.Load() {
				select {
				case out <- bytes.Clone(msg):
				default: // full: lost, as a datagram would be
				}
			}
			return nil
		},
		Receive: func(buf []byte) (int, error) {
			select {
			case m := <-in:
				return copy(buf, m), nil
			case <-l.closed:
				return 0, net.ErrClosed
			}
		},
		Close: func() error { l.closeOnce.Do(func() { close(l.closed) }); return nil },
	}
}

// A Dial whose peer does not answer within RekeyAttemptTime gives up its
// handshake; a later Send must start one again, as a packet waiting for a
// key does in the daemon. Send waited for the session without asking for
// it, so the Conn stayed without a session for good.
func TestConnSendRestartsAGivenUpHandshake(t *testing.T) {
	aKey, bKey := keys(t), keys(t)
	lookup := abLookup(aKey, bKey)
	policy := rekey.DefaultPolicy()
	policy.RekeyTimeout, policy.RekeyAttemptTime, policy.RekeyJitter = 100*time.Millisecond, 300*time.Millisecond, 0
	link := newSwitchLink() // down: the peer is unreachable for now
	client, err := Dial(Config{PeerID: "a", PrivateKey: aKey, Peers: lookup, Policy: policy}, "b", link.end(link.toServer, link.toClient))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := Accept(Config{PeerID: "b", PrivateKey: bKey, Peers: lookup, Policy: policy}, link.end(link.toClient, link.toServer))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	waitfor.Cond(t, 5*time.Second, 10*time.Millisecond, "the client to give up its handshake", func() bool {
		return strings.Contains(client.Session().Problem(), "did not complete")
	})
	link.up.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Send(ctx, []byte("again")); err != nil {
		t.Fatalf("Send once the peer is reachable: %v (problem: %s)", err, client.Session().Problem())
	}
	if m, err := server.Receive(ctx); err != nil || string(m) != "again" {
		t.Fatalf("server got %q, %v", m, err)
	}
}

// abLookup knows two peers, "a" and "b", by their keys.
func abLookup(aKey, bKey handshake.PrivateKey) LookupFunc {
	return func(id string) (handshake.PeerInfo, error) {
		switch id {
		case "a":
			return handshake.PeerInfo{PublicKey: aKey.PublicKey()}, nil
		case "b":
			return handshake.PeerInfo{PublicKey: bKey.PublicKey()}, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	}
}

// A Dial that fails (a peer the lookup does not know, a first send that
// fails) returns its error and leaves nothing running. It started the
// Conn's goroutines first and then closed the Conn, which waits for its
// receive loop: with a Transport without Close (check accepts one, and
// Conn.Close calls Close only when set) that loop stayed blocked in
// Receive and Dial never returned.
func TestDialFailureStartsNothing(t *testing.T) {
	aKey, bKey := keys(t), keys(t)
	cfg := Config{PeerID: "a", PrivateKey: aKey, Peers: abLookup(aKey, bKey)}
	for _, tc := range []struct {
		peer    string
		sendErr error
		want    string
	}{
		{"nobody", nil, "nobody"},
		{"b", errors.New("link down"), "link down"},
	} {
		stop := make(chan struct{})
		var received atomic.Int32
		tr := Transport{
			Send: func([]byte) error { return tc.sendErr },
			Receive: func([]byte) (int, error) {
				received.Add(1)
				<-stop
				return 0, net.ErrClosed
			},
		}
		done := make(chan error, 1)
		go func() {
			c, err := Dial(cfg, tc.peer, tr)
			if c != nil {
				c.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial %q: %v, want an error naming %q", tc.peer, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Dial %q did not return", tc.peer)
			close(stop)
			<-done // returns once Receive is unblocked
			stop = nil
		}
		if stop != nil {
			close(stop)
		}
		if n := received.Load(); n != 0 {
			t.Errorf("Dial %q failed yet called Receive %d times", tc.peer, n)
		}
	}
}
