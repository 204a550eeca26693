package tunnel

import (
	"container/heap"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/conf"
)

// The heap keeps the earliest deadline on top; lower only ever moves a
// peer earlier, and wakes the schedule only for a deadline before its sleep.
func TestScheduleLower(t *testing.T) {
	s := newSchedule(nil, 0)
	p1, p2, p3 := &Peer{id: "1"}, &Peer{id: "2"}, &Peer{id: "3"}
	s.sleepUntil.Store(1000)
	s.lower(p1, 5000)
	s.lower(p2, 3000)
	s.lower(p1, 9000) // later: ignored, p1 stays at 5000
	select {
	case <-s.wake:
		t.Fatal("deadlines after the schedule's sleep woke it")
	default:
	}
	if got := p1.timer.due.Load(); got != 5000 {
		t.Fatalf("p1 due = %d after a later lower, want 5000", got)
	}
	s.lower(p3, 500) // before the sleep: wakes
	select {
	case <-s.wake:
	default:
		t.Fatal("a deadline before the schedule's sleep did not wake it")
	}
	s.lower(p1, 100) // moves p1 to the top
	var order []string
	for s.heap.Len() > 0 {
		order = append(order, heap.Pop(&s.heap).(*Peer).id)
	}
	if strings.Join(order, ",") != "1,3,2" {
		t.Fatalf("pop order %v, want 1,3,2 (deadlines 100, 500, 3000)", order)
	}
	if p1.timer.index != -1 || p1.timer.at != 0 {
		t.Fatalf("popped peer still marked in the heap: index %d", p1.timer.index)
	}
}

// With the schedule (no fixed tick), a persistent keepalive still goes out
// on time, and an idle peer without one leaves the schedule asleep.
func TestScheduleRunsTimersAtTheirDeadline(t *testing.T) {
	const every = 300 * time.Millisecond
	p := newPairOpts(t, func(a, b *conf.Config) {
		a.Peers[0].PersistentKeepalive = every
	}, 0, nil, func(h *host, o *Options) {
		o.Now = time.Now
		o.TickInterval = 0
	})
	p.exchange(t, 1)
	// b has no persistent keepalive; once its passive keepalive and a's
	// first keepalives are done, it must sleep past the test.
	start := p.b.peerStatus(t).RxPackets
	waitFor(t, 10*time.Second, "three persistent keepalives from a", func() bool {
		return p.b.peerStatus(t).RxPackets >= start+3
	})
	s := p.a.dev.sched
	if until := s.sleepUntil.Load(); until != math.MaxInt64 && time.Duration(until-s.at(time.Now())) > every {
		t.Errorf("a sleeps %v, longer than its keepalive interval %v", time.Duration(until-s.at(time.Now())), every)
	}
}

// Many quiet peers cost the schedule nothing: with no traffic and no
// keepalive, nobody is in the heap and the goroutine sleeps without a
// deadline.
func TestScheduleIdleWithManyPeers(t *testing.T) {
	p := newPairOpts(t, func(a, b *conf.Config) {
		for i := range 500 {
			k := mustKey(t)
			a.Peers = append(a.Peers, conf.Peer{ID: "quiet" + strconv.Itoa(i), PublicKey: k.PublicKey()})
		}
	}, 0, nil, func(h *host, o *Options) {
		o.Now = time.Now
		o.TickInterval = 0
	})
	s := p.a.dev.sched
	waitFor(t, 5*time.Second, "the schedule to sleep without a deadline", func() bool {
		return s.sleepUntil.Load() == math.MaxInt64
	})
	s.mu.Lock()
	n := len(s.heap)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d quiet peers in the schedule, want 0", n)
	}
	// And traffic puts the active one back: the exchange arms timers.
	p.exchange(t, 1)
	waitFor(t, 5*time.Second, "the active peer to be scheduled", func() bool {
		return p.a.dev.peers.Load().byID["beta"].timer.due.Load() != 0
	})
}

// A reload that shortens reject_after leaves running keys the lifetime they
// were made with. The schedule must wake for a key's expiry at that
// lifetime's end: waking at the new, shorter one finds nothing to expire,
// puts the peer back at the same past deadline and spins until the key
// really expires (minutes of a core at 100%), deaf to Close meanwhile.
func TestScheduleAfterRejectAfterShortened(t *testing.T) {
	var nows atomic.Int64
	p := newPairOpts(t, nil, 0, nil, func(h *host, o *Options) {
		o.Now = func() time.Time { nows.Add(1); return time.Now() }
		o.TickInterval = 0
	})
	p.exchange(t, 1)
	cfg := *p.a.cfg
	cfg.Session.RekeyAfter, cfg.Session.RejectAfter, cfg.Session.Keepalive = 200*time.Millisecond, time.Second, 100*time.Millisecond
	if err := p.a.dev.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	_, kp, _ := p.a.dev.peers.Load().byID["beta"].sess.Slots()
	time.Sleep(time.Until(kp.Created.Add(1200 * time.Millisecond))) // past the new reject_after, not the key's own
	before := nows.Load()
	time.Sleep(200 * time.Millisecond)
	if n := nows.Load() - before; n > 1000 {
		t.Fatalf("%d clock readings in 200 ms of an idle tunnel: the schedule spins", n)
	}
}
