package tunnel

import (
	"container/heap"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"stunnel/rekey"
)

// schedule runs the peers' timers from one goroutine that sleeps until the
// earliest deadline over all peers, instead of a fixed tick walking every
// peer (issue 21: an idle daemon woke 20 times a second and its CPU grew
// with the number of quiet peers).
//
// Peers sit in a min-heap keyed by the deadline the schedule holds for them
// (peerTimer.due). Deadlines that move later need nothing: the schedule
// wakes early, Due finds nothing, the peer goes back in at its new
// deadline. A deadline that moves earlier (a timer armed from nothing by a
// packet) is reported by rearm, which the packet path calls once per batch:
// it reads the peer's next deadline (the peer's own lock) and compares it
// with due (an atomic); only when the new one is earlier does it take the
// schedule's lock, and only when it is earlier than the schedule's own
// sleep does it wake it. Most batches change nothing and touch no shared
// lock.
//
// Times are kept as nanoseconds since base, a reading of the device's clock
// taken at start: with time.Now they are monotonic, so a step of the wall
// clock (NTP, a suspended laptop's resume) cannot park a deadline an hour
// away.
type schedule struct {
	d    *Device
	base time.Time     // immutable; the origin of every deadline below
	wake chan struct{} // capacity 1: "a deadline moved earlier than sleepUntil"

	// sleepUntil is the time (ns since base) the goroutine sleeps until
	// (MaxInt64: no deadline). Written by the schedule goroutine, read by rearm.
	sleepUntil atomic.Int64

	mu   sync.Mutex // guards heap and every peerTimer.index/at
	heap timerHeap

	interval time.Duration // > 0: also walk every peer this often (Options.TickInterval)
}

// peerTimer is a peer's place in the schedule.
type peerTimer struct {
	// due is the deadline (ns since base) the schedule holds for the peer, 0 for
	// none. rearm lowers it (CAS); the schedule clears it when it pops the
	// peer and sets it when it puts the peer back.
	due atomic.Int64

	index int   // position in schedule.heap, -1 (or unset with at 0): absent; schedule.mu
	at    int64 // heap key; schedule.mu
}

// ticketRotateEvery: the ticket ring wants a Rotate about once a minute so
// erased keys do not linger (tickets.Ring.Rotate).
const ticketRotateEvery = time.Minute

func newSchedule(d *Device, interval time.Duration) *schedule {
	s := &schedule{d: d, base: time.Now(), wake: make(chan struct{}, 1), interval: interval}
	if d != nil {
		s.base = d.now()
	}
	s.sleepUntil.Store(math.MaxInt64)
	return s
}

// rearm tells the schedule that p's timers may have moved: the packet path
// calls it after each batch that stamped them, act after every action.
func (p *Peer) rearm() {
	s := p.d.sched
	if s == nil { // tests drive tick themselves
		return
	}
	if next := p.nextWake(); !next.IsZero() {
		s.lower(p, s.at(next))
	}
}

// at is t in the schedule's time: ns since base, at least 1 (0 is "none").
func (s *schedule) at(t time.Time) int64 { return max(int64(t.Sub(s.base)), 1) }

// nextWake is when p's timers or keys next need a visit (zero: never):
// the earliest timer deadline, or the expiry of a keypair, whose keys Due
// then erases (the timers do not cover that). A keypair expires by the
// policy it was made under, not today's: after a reload that shortened
// reject_after, today's would name a past instant at which Due finds
// nothing to erase, and the schedule would spin on it.
func (p *Peer) nextWake() time.Time {
	next := p.sess.NextDeadline()
	prev, cur, nxt := p.sess.Slots()
	for _, kp := range [3]*rekey.Keypair{prev, cur, nxt} {
		if kp == nil || kp.IsZeroed() {
			continue
		}
		if exp := kp.RejectAt(); next.IsZero() || exp.Before(next) {
			next = exp
		}
	}
	return next
}

// lower makes the schedule visit p at n at the latest.
func (s *schedule) lower(p *Peer, n int64) {
	for {
		cur := p.timer.due.Load()
		if cur != 0 && cur <= n {
			return // the schedule visits p by then anyway
		}
		if p.timer.due.CompareAndSwap(cur, n) {
			break
		}
	}
	s.mu.Lock()
	s.heap.set(p, n)
	s.mu.Unlock()
	if n < s.sleepUntil.Load() {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run is the schedule's goroutine.
func (s *schedule) run() {
	d := s.d
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, p := range d.peers.Load().list { // restored sessions, peers started before us
		p.rearm()
	}
	var lastRotate, lastWalk time.Time
	var due []*Peer
	for {
		now := d.now()
		if d.ticketRing != nil && now.Sub(lastRotate) >= ticketRotateEvery {
			_ = d.ticketRing.Rotate(now) // a key-file ring has nothing to generate; its outage is logged at issuance
			lastRotate = now
		}
		if s.interval > 0 && now.Sub(lastWalk) >= s.interval {
			d.tick() // the old fixed tick, kept as an option
			lastWalk = now
		}
		// Take the peers that are due, then visit them without the lock.
		due = due[:0]
		s.mu.Lock()
		for len(s.heap) > 0 && s.heap[0].timer.at <= s.at(now) {
			p := heap.Pop(&s.heap).(*Peer)
			p.timer.due.Store(0)
			due = append(due, p)
		}
		s.mu.Unlock()
		for i, p := range due {
			s.visit(p, now)
			due[i] = nil
		}

		// Sleep until the earliest deadline, the next rotation or walk.
		until := int64(math.MaxInt64)
		s.mu.Lock()
		if len(s.heap) > 0 {
			until = s.heap[0].timer.at
		}
		s.mu.Unlock()
		if d.ticketRing != nil {
			until = min(until, s.at(lastRotate.Add(ticketRotateEvery)))
		}
		if s.interval > 0 {
			until = min(until, s.at(lastWalk.Add(s.interval)))
		}
		s.sleepUntil.Store(until)
		select { // a rearm between the heap read and the store above left a token
		case <-s.wake:
			continue
		default:
		}
		if until != math.MaxInt64 {
			wait := time.Duration(until - s.at(d.now()))
			if wait <= 0 {
				continue
			}
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-s.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-d.closed:
			return
		}
		s.sleepUntil.Store(math.MaxInt64)
	}
}

// visit runs p's timers and puts it back at its next deadline. A removed
// peer is dropped from the schedule.
func (s *schedule) visit(p *Peer, now time.Time) {
	if !p.enter() {
		return
	}
	defer p.leave()
	p.act(p.sess.Due(now), now) // act puts p back at its next deadline (rearm)
}

// timerHeap orders peers by peerTimer.at (container/heap).
type timerHeap []*Peer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].timer.at < h[j].timer.at }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].timer.index, h[j].timer.index = i, j
}
func (h *timerHeap) Push(x any) {
	p := x.(*Peer)
	p.timer.index = len(*h)
	*h = append(*h, p)
}
func (h *timerHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	p.timer.index = -1
	p.timer.at = 0
	return p
}

// set puts p in the heap at n, or moves it there if it is earlier.
func (h *timerHeap) set(p *Peer, n int64) {
	t := &p.timer
	if t.at != 0 && t.index >= 0 && t.index < len(*h) && (*h)[t.index] == p {
		if n < t.at {
			t.at = n
			heap.Fix(h, t.index)
		}
		return
	}
	t.at = n
	heap.Push(h, p)
}
