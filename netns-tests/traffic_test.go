package netnstests

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20"

	"stunnel/internal/netns"
)

// streamOpts shapes one TCP transfer.
type streamOpts struct {
	Size     int64         // bytes to send; 0 means "for Duration"
	Duration time.Duration // with Size 0: send until this much time has passed
	Timeout  time.Duration // the whole transfer must end within this (default 2 min)
	// PauseAt, when > 0, stops the sender after that many bytes; it closes
	// Paused and waits for Resume before sending the rest.
	PauseAt        int64
	Paused, Resume chan struct{}
}

// streamResult is what each end saw.
type streamResult struct {
	Sent, Received         int64
	SentHash, ReceivedHash [32]byte
}

// tcpStream sends a keystream (never repeating, so a duplicated or misplaced
// chunk changes the hash) over TCP from namespace srcNS to address dst
// listening in namespace dstNS, and fails the test unless the receiver's
// byte count and SHA-256 match the sender's.
func tcpStream(t *testing.T, srcNS, dstNS, dst string, o streamOpts) streamResult {
	t.Helper()
	res, err := runStream(srcNS, dstNS, dst, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tcp %s -> %s: %d bytes arrived intact", srcNS, dst, res.Received)
	return res
}

// pausedStream is a transfer that stops after its first pauseAt bytes and
// waits there, so a test can change something (reload, address) with a
// connection open and data in flight.
type pausedStream struct {
	result chan pausedOutcome
	resume chan struct{}
	once   sync.Once
}

type pausedOutcome struct {
	res streamResult
	err error
}

// startPausedStream starts a transfer of size bytes from srcNS to dst in
// dstNS and returns once it sits at its pause. The sender is released at
// the latest when the test ends, so it is never left parked.
func startPausedStream(t *testing.T, srcNS, dstNS, dst string, size, pauseAt int64) *pausedStream {
	t.Helper()
	s := &pausedStream{result: make(chan pausedOutcome, 1), resume: make(chan struct{})}
	t.Cleanup(s.release)
	paused := make(chan struct{})
	go func() {
		res, err := runStream(srcNS, dstNS, dst, streamOpts{Size: size, PauseAt: pauseAt, Paused: paused, Resume: s.resume})
		s.result <- pausedOutcome{res, err}
	}()
	select {
	case <-paused:
	case o := <-s.result:
		t.Fatalf("the transfer ended before its pause: %v", o.err)
	case <-time.After(time.Minute):
		t.Fatal("the transfer did not reach its pause within a minute")
	}
	return s
}

func (s *pausedStream) release() { s.once.Do(func() { close(s.resume) }) }

// finish lets the sender go on and waits for the transfer's end.
func (s *pausedStream) finish() (streamResult, error) {
	s.release()
	o := <-s.result
	return o.res, o.err
}

// runStream is tcpStream for any goroutine: it reports instead of failing.
func runStream(srcNS, dstNS, dst string, o streamOpts) (streamResult, error) {
	var res streamResult
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(o.Timeout)
	var ln net.Listener
	if err := netns.Do(dstNS, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(dst, "0"))
		return err
	}); err != nil {
		return res, fmt.Errorf("listening on %s in %s: %v", dst, dstNS, err)
	}
	defer ln.Close()

	// The receiver writes res.Received* and recvErr; wg.Wait orders those
	// writes before the reads below.
	var wg sync.WaitGroup
	var recvErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			recvErr = fmt.Errorf("accept: %w", err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		h := sha256.New()
		res.Received, err = io.Copy(h, c)
		copy(res.ReceivedHash[:], h.Sum(nil))
		if err != nil {
			recvErr = fmt.Errorf("receiving: %w (after %d bytes)", err, res.Received)
		}
	}()

	var c net.Conn
	if err := netns.Do(srcNS, func() (err error) {
		d := net.Dialer{Deadline: deadline}
		c, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		ln.Close()
		wg.Wait()
		return res, fmt.Errorf("connecting from %s to %s: %v", srcNS, ln.Addr(), err)
	}
	_ = c.SetDeadline(deadline)
	sendErr := send(c, &res, o)
	if sendErr != nil {
		c.Close()
		ln.Close()
	}
	wg.Wait()
	c.Close()
	switch {
	case sendErr != nil:
		return res, fmt.Errorf("sending %s -> %s: %v (after %d bytes)", srcNS, ln.Addr(), sendErr, res.Sent)
	case recvErr != nil:
		return res, fmt.Errorf("%s -> %s: %v", srcNS, ln.Addr(), recvErr)
	case res.Received != res.Sent || res.ReceivedHash != res.SentHash:
		return res, fmt.Errorf("%s -> %s: sent %d bytes sha256 %x, received %d bytes sha256 %x",
			srcNS, ln.Addr(), res.Sent, res.SentHash, res.Received, res.ReceivedHash)
	}
	return res, nil
}

// send writes the stream and half-closes, so the receiver sees EOF.
func send(c net.Conn, res *streamResult, o streamOpts) error {
	var key [32]byte
	var nonce [12]byte
	binary.LittleEndian.PutUint64(key[:], uint64(time.Now().UnixNano()))
	ks, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		return err
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	start := time.Now()
	paused := false
	for {
		n := int64(len(buf))
		if o.Size > 0 {
			if res.Sent >= o.Size {
				break
			}
			n = min(n, o.Size-res.Sent)
		} else if time.Since(start) >= o.Duration {
			break
		}
		if o.PauseAt > 0 && !paused {
			if res.Sent >= o.PauseAt {
				paused = true
				close(o.Paused)
				<-o.Resume
			} else {
				n = min(n, o.PauseAt-res.Sent)
			}
		}
		chunk := buf[:n]
		clear(chunk)
		ks.XORKeyStream(chunk, chunk)
		h.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			return err
		}
		res.Sent += n
	}
	copy(res.SentHash[:], h.Sum(nil))
	if tc, ok := c.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}

// ping sends count pings from ns to addr and fails unless all are answered.
func ping(t *testing.T, ns, addr string, count int) {
	t.Helper()
	if err := tryPing(ns, addr, count, 2); err != nil {
		t.Fatal(err)
	}
}

// tryPing reports whether all count pings were answered, each within waitSec.
func tryPing(ns, addr string, count, waitSec int) error {
	fam := "-4"
	if netip.MustParseAddr(addr).Is6() {
		fam = "-6"
	}
	_, err := netns.Run(ns, "ping", fam, "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2",
		"-W", fmt.Sprint(waitSec), "-w", fmt.Sprint(count*waitSec+1), addr)
	return err
}

// pingUntil pings once at a time until one answer comes back: the first
// packets may wait for a handshake, or for a peer that is just coming back.
func pingUntil(t *testing.T, ns, addr string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "a ping answer from "+addr+" to "+ns, func() bool { return tryPing(ns, addr, 1, 1) == nil })
}

// udpMagic starts every datagram of the sequence sender.
var udpMagic = [8]byte{'s', 't', 's', 'e', 'q', '0', '0', '1'}

// udpCounter is a listener behind a tunnel that counts every sequence number
// it receives, so a duplicate (a replay that got through) cannot hide.
type udpCounter struct {
	conn *net.UDPConn
	done chan struct{}

	mu    sync.Mutex     // guards the fields below; loop writes, tests read
	seen  map[uint64]int // sequence number -> times received
	other [][]byte       // datagrams without the magic, in arrival order
}

func listenCounter(t *testing.T, ns, addr string) *udpCounter {
	t.Helper()
	var conn *net.UDPConn
	if err := netns.Do(ns, func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
		return err
	}); err != nil {
		t.Fatalf("udp listen on %s in %s: %v", addr, ns, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	c := &udpCounter{conn: conn, done: make(chan struct{}), seen: make(map[uint64]int)}
	go c.loop()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *udpCounter) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (c *udpCounter) loop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.mu.Lock()
		if n >= 16 && [8]byte(buf[:8]) == udpMagic {
			c.seen[binary.BigEndian.Uint64(buf[8:16])]++
		} else {
			c.other = append(c.other, append([]byte(nil), buf[:n]...))
		}
		c.mu.Unlock()
	}
}

// counts returns the distinct sequence numbers seen, how many of them were
// seen more than once, and how many other datagrams arrived.
func (c *udpCounter) counts() (distinct, dups, other int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.seen {
		if k > 1 {
			dups++
		}
	}
	return len(c.seen), dups, len(c.other)
}

// others returns the non-sequence datagrams received so far.
func (c *udpCounter) others() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := make([]string, len(c.other))
	for i, p := range c.other {
		s[i] = string(p)
	}
	return s
}

// udpSender sends datagrams from a socket made in a namespace.
type udpSender struct {
	conn *net.UDPConn
	next uint64 // next sequence number
}

func newUDPSender(t *testing.T, ns string, to netip.AddrPort) *udpSender {
	t.Helper()
	var conn *net.UDPConn
	if err := netns.Do(ns, func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatalf("udp dial %s from %s: %v", to, ns, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpSender{conn: conn}
}

// sendSeq sends n sequence-numbered datagrams of size bytes, in bursts of 32,
// and after each burst waits until the counter has every datagram sent so
// far: the tunnel carries nothing else, so none may be lost, and waiting
// keeps socket buffers from overflowing.
func (s *udpSender) sendSeq(t *testing.T, c *udpCounter, n, size int) {
	t.Helper()
	buf := make([]byte, max(size, 16))
	copy(buf, udpMagic[:])
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint64(buf[8:16], s.next)
		s.next++
		if _, err := s.conn.Write(buf); err != nil {
			t.Fatalf("udp send: %v", err)
		}
		if s.next%32 == 0 || i == n-1 {
			want := int(s.next)
			waitFor(t, 10*time.Second, fmt.Sprintf("the udp counter to see %d sequence numbers", want), func() bool {
				d, _, _ := c.counts()
				return d >= want
			})
		}
	}
}

// sendRaw sends one datagram with the given payload.
func (s *udpSender) sendRaw(t *testing.T, payload []byte) {
	t.Helper()
	if _, err := s.conn.Write(payload); err != nil {
		t.Fatalf("udp send: %v", err)
	}
}
