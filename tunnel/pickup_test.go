package tunnel

import (
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// echoTUN is a TUN whose "kernel" answers every packet the tunnel writes
// before Write returns, as a real kernel answers a ping: the reply (source
// and destination swapped) is queued to be read. It implements readyTUN.
// With lazy set, WaitReadable does not wake for those replies, so only a
// UDP reader's pickUpReplies can send them.
type echoTUN struct {
	*memTUN
	lazy bool

	mu    sync.Mutex
	queue [][]byte      // replies waiting to be read, oldest first
	kick  chan struct{} // cap 1: something was queued that WaitReadable wakes for
}

func newEchoTUN(m *memTUN, lazy bool) *echoTUN {
	return &echoTUN{memTUN: m, lazy: lazy, kick: make(chan struct{}, 1)}
}

func (e *echoTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		reply := append([]byte(nil), b[offset:]...)
		copy(reply[12:16], b[offset+16:offset+20])
		copy(reply[16:20], b[offset+12:offset+16])
		e.mu.Lock()
		e.queue = append(e.queue, reply)
		e.mu.Unlock()
		if !e.lazy {
			select {
			case e.kick <- struct{}{}:
			default:
			}
		}
	}
	return len(bufs), nil
}

func (e *echoTUN) ReadReady(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-e.closed:
		return 0, os.ErrClosed
	default:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for n < len(bufs) && len(e.queue) > 0 {
		sizes[n] = copy(bufs[n][offset:], e.queue[0])
		e.queue = e.queue[1:]
		n++
	}
	return n, nil
}

func (e *echoTUN) WaitReadable() error {
	select {
	case <-e.kick:
		return nil
	case <-e.closed:
		return os.ErrClosed
	}
}

func seqPacket(i int) []byte {
	var seq [4]byte
	binary.BigEndian.PutUint32(seq[:], uint32(i))
	return ipv4UDP("198.19.0.1", "198.19.0.2", seq[:])
}

// The reply that b's kernel gives while b writes a's packet to its TUN
// leaves from b's UDP reader: b's TUN reader never wakes for it here.
func TestUDPReaderSendsTheReplyItsWriteCaused(t *testing.T) {
	p := newPairTUN(t, nil, 0, func(m *memTUN) tun.Device { return newEchoTUN(m, true) })
	for i := range 3 {
		p.a.tun.toTunnel <- seqPacket(i)
		want := seqPacket(i)
		copy(want[12:16], []byte{198, 19, 0, 2})
		copy(want[16:20], []byte{198, 19, 0, 1})
		p.a.expect(t, want)
	}
}

// With b's TUN reader and UDP reader both taking replies, they still
// leave in the order b's kernel queued them.
func TestRepliesKeepTheirOrderWithTwoReaders(t *testing.T) {
	for _, inline := range inlineModes {
		p := newPairTUN(t, nil, inline, func(m *memTUN) tun.Device { return newEchoTUN(m, false) })
		// One round trip first: packets sent before the handshake wait in
		// a bounded queue that drops the oldest, which is not this test.
		p.a.tun.toTunnel <- seqPacket(0)
		if got := <-p.a.tun.fromTunnel; binary.BigEndian.Uint32(got[28:]) != 0 {
			t.Fatal("the first reply is not the first packet's")
		}
		const n = 2000
		go func() {
			for i := range n {
				p.a.tun.toTunnel <- seqPacket(i)
			}
		}()
		for i := range n {
			select {
			case got := <-p.a.tun.fromTunnel:
				if seq := int(binary.BigEndian.Uint32(got[28:])); seq != i {
					t.Fatalf("inline=%d: reply %d carries sequence number %d", inline, i, seq)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("inline=%d: reply %d of %d did not arrive", inline, i, n)
			}
		}
	}
}
