package securesession

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Transport moves whole messages: the callback API's view of the network.
type Transport struct {
	// Send sends one message. It may be called from several goroutines.
	Send func(msg []byte) error
	// Receive blocks for the next message, copies it into buf (which holds
	// MaxFrame bytes) and returns its length. An error ends the Conn.
	Receive func(buf []byte) (int, error)
	// Close is called by Conn.Close and must unblock Receive (close the
	// socket, the pipe...): Conn.Close waits for its goroutines. So no
	// callback may call Conn.Close (it would wait for itself), and a Send
	// that blocks must be unblocked by Close as well. A Send already on
	// its way (a timer's retry, a Conn.Send) may still come after Close:
	// it must then fail, not panic (a Send on a closed Go channel would).
	Close func() error
}

// check refuses a Transport the Conn's goroutines would call through a
// nil function: a panic there takes the whole program down.
func (tr Transport) check() error {
	switch {
	case tr.Send == nil:
		return errors.New("securesession: Transport.Send is nil")
	case tr.Receive == nil:
		return errors.New("securesession: Transport.Receive is nil")
	}
	return nil
}

// ErrClosed is returned by a closed Conn.
var ErrClosed = errors.New("securesession: connection closed")

// tickEvery is how often a Conn runs its timers. Retries and rekeys are
// due seconds apart, so a quarter second is precise enough and costs
// nothing measurable.
const tickEvery = 250 * time.Millisecond

// Conn is a session driven by goroutines of its own over a Transport: the
// callback API. It handshakes, retries, rekeys and sends keepalives by
// itself; Send and Receive block.
type Conn struct {
	s  *Session
	tr Transport

	// established is closed while a session is usable. Send, finding none
	// (before the first, or once the keys expired after a quiet spell),
	// puts an open one in its place (estOpen) and waits on it; sendAll,
	// which runs after every message that can complete a handshake,
	// closes it once a session is usable again. Both guarded by estMu.
	estMu       sync.Mutex
	established chan struct{}
	estOpen     bool
	done        chan struct{} // closed by Close, or when the transport ends
	closed      atomic.Bool   // Close was called
	closeOnce   sync.Once
	wg          sync.WaitGroup
	err         atomic.Pointer[error] // why the receive loop ended
	// incoming holds received application messages, each owned by the
	// Receive that takes it. Only the receive loop sends, and never
	// blocking (see ReceiveQueueLen).
	incoming chan []byte
	// Dropped counts received messages that were refused (bad MAC,
	// replay, garbage): a Conn keeps going, as the daemon does.
	Dropped atomic.Uint64
	// DroppedQueueFull counts application messages that arrived while
	// ReceiveQueueLen others already waited for Receive: dropped, as a UDP
	// socket drops datagrams when its receive buffer is full. Written by
	// the receive loop only; read it at any time.
	DroppedQueueFull atomic.Uint64
}

// ReceiveQueueLen is how many received application messages a Conn holds
// for Receive. The receive loop never waits for the application: while
// the queue is full it drops what arrives (DroppedQueueFull) and goes on
// answering handshakes and taking keepalives, so an application that reads
// slowly or not at all loses its newest data, never its session (a rekey,
// or a peer that restarts and handshakes again, would otherwise wait
// behind the data it does not read). An application that must not lose
// messages reads promptly, or acknowledges them in its own protocol, as
// it would over UDP.
const ReceiveQueueLen = 64

// Dial starts a session with peerID over tr and returns at once; Send waits
// for the handshake.
func Dial(cfg Config, peerID string, tr Transport) (*Conn, error) {
	if err := tr.check(); err != nil {
		return nil, err
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	// The goroutines start only once the initiation is out: a Dial that
	// fails leaves nothing to wait for (Conn.Close would wait for a
	// Receive that a Transport without Close never unblocks). The
	// response waits in the transport meanwhile, as any message does
	// between two Receive calls.
	first, err := s.Connect(peerID)
	if err == nil {
		err = tr.Send(first)
	}
	if err != nil {
		s.Close()
		if tr.Close != nil {
			_ = tr.Close() // as Conn.Close would: a failed Dial closes tr
		}
		return nil, err
	}
	return newConn(s, tr), nil
}

// Accept answers the first peer that initiates over tr (any peer its
// lookup knows).
func Accept(cfg Config, tr Transport) (*Conn, error) {
	if err := tr.check(); err != nil {
		return nil, err
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return newConn(s, tr), nil
}

func newConn(s *Session, tr Transport) *Conn {
	c := &Conn{s: s, tr: tr, incoming: make(chan []byte, ReceiveQueueLen), done: make(chan struct{})}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.receiveLoop() }()
	go func() { defer c.wg.Done(); c.timerLoop() }()
	return c
}

// Session is the underlying buffer-API session (for PeerID, SessionID...).
func (c *Conn) Session() *Session { return c.s }

func (c *Conn) sendAll(msgs [][]byte) {
	for _, m := range msgs {
		_ = c.tr.Send(m) // a lost message is a lost datagram: timers retry
	}
	c.estMu.Lock()
	if c.estOpen && c.s.Established() {
		close(c.established)
		c.estOpen = false
	}
	c.estMu.Unlock()
}

// waitFor returns nil when a session is usable now, else a channel
// closed once one is.
func (c *Conn) waitFor() <-chan struct{} {
	c.estMu.Lock()
	defer c.estMu.Unlock()
	if c.s.Established() {
		return nil
	}
	if !c.estOpen {
		c.established, c.estOpen = make(chan struct{}), true
	}
	return c.established
}

func (c *Conn) receiveLoop() {
	buf := make([]byte, MaxFrame)
	for {
		n, err := c.tr.Receive(buf)
		if err == nil && (n < 0 || n > len(buf)) { // buf[:n] would panic in our goroutine
			err = fmt.Errorf("securesession: Transport.Receive returned length %d for a %d-byte buffer", n, len(buf))
		}
		if err != nil {
			c.err.Store(&err)
			c.shutdown()
			return
		}
		res, err := c.s.Unwrap(buf[:n])
		if err != nil {
			c.Dropped.Add(1)
		}
		c.sendAll(res.Send)
		if res.Data != nil {
			c.deliver(res.Data)
		}
	}
}

// deliver queues data for Receive, or drops it when the queue is full:
// waiting for room would hold up every message behind it, the peer's
// handshakes too (see ReceiveQueueLen).
func (c *Conn) deliver(data []byte) {
	// Only the receive loop sends on incoming, so the room seen here is
	// still there below; checking first spares copying what is dropped.
	if len(c.incoming) == cap(c.incoming) {
		c.DroppedQueueFull.Add(1)
		return
	}
	select {
	case c.incoming <- append([]byte(nil), data...):
	default:
		c.DroppedQueueFull.Add(1)
	}
}

func (c *Conn) timerLoop() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.sendAll(c.s.Tick())
		case <-c.done:
			return
		}
	}
}

// Send seals msg and sends it, waiting (until ctx ends) for a session: the
// first one, or a new one when none is usable any more (the keys expired
// after a quiet spell longer than reject_after), as a packet waits for a
// key in the daemon. While it waits, a handshake that went unanswered for
// RekeyAttemptTime starts over.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	// With established and done both ready, select picks either.
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	for {
		if err := c.waitEstablished(ctx); err != nil {
			return err
		}
		out, err := c.s.Wrap(msg)
		if errors.Is(err, ErrSessionClosed) { // Close ran meanwhile
			return c.closedErr()
		}
		if errors.Is(err, ErrNotEstablished) { // the key expired since: wait for the next
			continue
		}
		if err != nil {
			return err
		}
		c.sendAll(c.s.drain()) // a rekey Wrap started
		return c.tr.Send(out)
	}
}

// waitEstablished waits for a usable session. Meanwhile it asks for one
// every tick, as a packet waiting for a key does in the daemon: the timers
// retry a handshake in progress, but one they gave up (no answer for
// RekeyAttemptTime) starts again only when something wants keys.
func (c *Conn) waitEstablished(ctx context.Context) error {
	var retry *time.Ticker
	for {
		ready := c.waitFor()
		if ready == nil {
			return nil
		}
		c.sendAll(c.s.wantKeys())
		if retry == nil {
			retry = time.NewTicker(tickEvery)
			defer retry.Stop()
		}
		select {
		case <-ready:
			return nil
		case <-c.done:
			return c.closedErr()
		case <-ctx.Done():
			return ctx.Err()
		case <-retry.C:
		}
	}
}

// Receive returns the next application message, waiting until ctx ends.
// Once the transport has ended, it still returns the messages that arrived
// before the end, then the error; after Close, only ErrClosed. Messages
// that arrive while ReceiveQueueLen wait unread are dropped and counted in
// DroppedQueueFull: the Conn's handshakes, rekeys and keepalives go on
// whether or not the application reads.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	if c.closed.Load() { // or select could still pick a queued message
		return nil, c.closedErr()
	}
	select {
	case m := <-c.incoming:
		return m, nil
	case <-c.done:
		// The receive loop queues a message before it can see the end of
		// the transport, so what is queued now arrived before that end:
		// the peer's last words, which select would drop half the time.
		// After Close they are no longer wanted.
		if !c.closed.Load() {
			select {
			case m := <-c.incoming:
				return m, nil
			default:
			}
		}
		return nil, c.closedErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Conn) closedErr() error {
	if e := c.err.Load(); e != nil {
		return errors.Join(ErrClosed, *e)
	}
	return ErrClosed
}

// Close stops the goroutines, closes the transport and zeroes the keys.
// Nothing of the Conn runs when it returns.
func (c *Conn) Close() error {
	c.closed.Store(true)
	err := c.shutdown()
	c.wg.Wait()
	c.s.Close()
	return err
}

func (c *Conn) shutdown() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		if c.tr.Close != nil {
			err = c.tr.Close()
		}
	})
	return err
}
