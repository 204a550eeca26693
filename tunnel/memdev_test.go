package tunnel

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"stunnel/internal/fakeclock"
)

// memNet is an in-memory UDP network: binds attached at an address exchange
// datagrams through channels, in order, with batching, and an optional
// filter that sees (and may drop or record) every datagram.
type memNet struct {
	mu     sync.Mutex
	binds  map[netip.AddrPort]*memBind
	filter func(from, to netip.AddrPort, b []byte) bool // false drops
}

func newMemNet() *memNet { return &memNet{binds: make(map[netip.AddrPort]*memBind)} }

type datagram struct {
	from netip.AddrPort
	data []byte
}

type memBind struct {
	net    *memNet
	addr   netip.AddrPort
	rx     chan datagram
	closed chan struct{}
	once   sync.Once
}

func (n *memNet) bind(addr string) *memBind {
	b := &memBind{net: n, addr: netip.MustParseAddrPort(addr), rx: make(chan datagram, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.binds[b.addr] = b
	n.mu.Unlock()
	return b
}

// inject delivers a datagram as if sent from any address.
func (n *memNet) inject(from, to netip.AddrPort, data []byte) {
	n.mu.Lock()
	dst := n.binds[to]
	n.mu.Unlock()
	if dst != nil {
		dst.deliver(datagram{from: from, data: append([]byte(nil), data...)})
	}
}

// deliver queues a datagram unless the bind is closed (then it is lost, as
// on a real network).
func (b *memBind) deliver(d datagram) {
	select {
	case b.rx <- d:
	case <-b.closed:
	}
}

const memBatch = 16

func (b *memBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{b.receive}, b.addr.Port(), nil
}

func (b *memBind) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	var n int
	select {
	case d := <-b.rx:
		sizes[0] = copy(bufs[0], d.data)
		eps[0] = &conn.StdNetEndpoint{AddrPort: d.from}
		n = 1
	case <-b.closed:
		return 0, net.ErrClosed
	}
	for n < len(bufs) {
		select {
		case d := <-b.rx:
			sizes[n] = copy(bufs[n], d.data)
			eps[n] = &conn.StdNetEndpoint{AddrPort: d.from}
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (b *memBind) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func (b *memBind) SetMark(uint32) error { return nil }
func (b *memBind) BatchSize() int       { return memBatch }

func (b *memBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

func (b *memBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	select {
	case <-b.closed:
		return net.ErrClosed
	default:
	}
	to := ep.(*conn.StdNetEndpoint).AddrPort
	b.net.mu.Lock()
	dst, filter := b.net.binds[to], b.net.filter
	b.net.mu.Unlock()
	for _, buf := range bufs {
		if filter != nil && !filter(b.addr, to, buf) {
			continue
		}
		if dst != nil {
			dst.deliver(datagram{from: b.addr, data: append([]byte(nil), buf...)})
		}
	}
	return nil
}

// memTUN is an in-memory TUN device: the test writes packets "from the
// kernel" into toTunnel and reads what the tunnel delivers from fromTunnel.
type memTUN struct {
	toTunnel   chan []byte
	fromTunnel chan []byte
	events     chan tun.Event
	closed     chan struct{}
	once       sync.Once
}

func newMemTUN() *memTUN {
	return &memTUN{toTunnel: make(chan []byte, 1024), fromTunnel: make(chan []byte, 1024),
		events: make(chan tun.Event, 1), closed: make(chan struct{})}
}

func (t *memTUN) File() *os.File { return nil }

func (t *memTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var n int
	select {
	case p := <-t.toTunnel:
		sizes[0] = copy(bufs[0][offset:], p)
		n = 1
	case <-t.closed:
		return 0, os.ErrClosed
	}
	for n < len(bufs) {
		select {
		case p := <-t.toTunnel:
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (t *memTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		select {
		case t.fromTunnel <- append([]byte(nil), b[offset:]...):
		case <-t.closed:
			return 0, os.ErrClosed
		}
	}
	return len(bufs), nil
}

func (t *memTUN) MTU() (int, error)        { return 1420, nil }
func (t *memTUN) Name() (string, error)    { return "mem0", nil }
func (t *memTUN) Events() <-chan tun.Event { return t.events }
func (t *memTUN) BatchSize() int           { return memBatch }
func (t *memTUN) Close() error {
	t.once.Do(func() { close(t.closed); close(t.events) })
	return nil
}

func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}
