package netnstests

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"stunnel/internal/netns"
)

// impairment is netem's model, applied per packet by relay.
type impairment struct {
	Loss, Duplicate, Reorder float64       // probabilities
	MaxDelay                 time.Duration // a reordered packet waits up to this
}

// relay is a UDP forwarder standing in for tc netem on kernels built
// without sch_netem: whatever arrives on one socket leaves by the other,
// toward that side's fixed destination, impaired on the way. Peers point
// their endpoints at it, so every tunnel packet crosses it.
type relay struct {
	imp  impairment
	wg   sync.WaitGroup
	conn [2]*net.UDPConn

	mu        sync.Mutex // guards the counters and rng
	rng       *rand.Rand
	forwarded int
	dropped   int
	duped     int
	delayed   int
}

// startRelay binds sockets at listen[0] and listen[1] in ns; datagrams to
// listen[0] go to dst[1] from listen[1], and the reverse.
func startRelay(t *testing.T, ns string, listen, dst [2]netip.AddrPort, imp impairment) *relay {
	t.Helper()
	r := &relay{imp: imp, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 6))}
	err := netns.Do(ns, func() error {
		for i := range listen {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen[i]))
			if err != nil {
				return err
			}
			_ = c.SetReadBuffer(8 << 20)
			_ = c.SetWriteBuffer(8 << 20)
			r.conn[i] = c
		}
		return nil
	})
	if err != nil {
		for _, c := range r.conn {
			if c != nil {
				c.Close()
			}
		}
		t.Fatalf("relay in %s: %v", ns, err)
	}
	for i := range 2 {
		r.wg.Add(1)
		go r.forward(r.conn[i], r.conn[1-i], dst[1-i])
	}
	t.Cleanup(func() {
		r.conn[0].Close()
		r.conn[1].Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) forward(in, out *net.UDPConn, to netip.AddrPort) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := in.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		r.forwarded++
		drop := r.rng.Float64() < r.imp.Loss
		dup := !drop && r.rng.Float64() < r.imp.Duplicate
		var delay time.Duration
		if !drop && r.rng.Float64() < r.imp.Reorder {
			delay = time.Duration(r.rng.Int64N(int64(r.imp.MaxDelay))) + time.Millisecond
		}
		switch {
		case drop:
			r.dropped++
		case delay > 0:
			r.delayed++
		}
		if dup {
			r.duped++
		}
		r.mu.Unlock()
		if drop {
			continue
		}
		copies := 1
		if dup {
			copies = 2
		}
		for range copies {
			if delay > 0 {
				// Later packets overtake this one: reordering.
				time.AfterFunc(delay, func() { _, _ = out.WriteToUDPAddrPort(p, to) })
			} else {
				_, _ = out.WriteToUDPAddrPort(p, to)
			}
		}
	}
}

func (r *relay) stats() (forwarded, dropped, duped, delayed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forwarded, r.dropped, r.duped, r.delayed
}
