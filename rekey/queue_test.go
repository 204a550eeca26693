package rekey

import (
	"fmt"
	"testing"
)

func pkt(i int) []byte { return []byte(fmt.Sprint(i)) }

func drainAll(q *Queue) []string {
	var got []string
	q.Drain(func(p []byte) { got = append(got, string(p)) })
	return got
}

func TestQueueKeepsOrder(t *testing.T) {
	q := NewQueue(4)
	for i := range 3 {
		if ev, dropped := q.Push(pkt(i)); dropped || ev != nil {
			t.Fatalf("Push(%d) evicted %q on a queue with room", i, ev)
		}
	}
	if q.Len() != 3 {
		t.Fatalf("Len = %d, want 3", q.Len())
	}
	if got := fmt.Sprint(drainAll(q)); got != "[0 1 2]" {
		t.Fatalf("Drain order %s, want [0 1 2]", got)
	}
	if q.Len() != 0 {
		t.Fatalf("Len after Drain = %d, want 0", q.Len())
	}
	if got := drainAll(q); len(got) != 0 {
		t.Fatalf("second Drain yielded %v", got)
	}
}

func TestQueueIsBoundedAndDropsOldest(t *testing.T) {
	q := NewQueue(3)
	var evicted []string
	for i := range 10 {
		if ev, dropped := q.Push(pkt(i)); dropped {
			evicted = append(evicted, string(ev))
		} else if i >= 3 {
			t.Fatalf("Push(%d) on a full queue did not evict", i)
		}
		if q.Len() > 3 {
			t.Fatalf("Len = %d over capacity 3", q.Len())
		}
	}
	if got := fmt.Sprint(evicted); got != "[0 1 2 3 4 5 6]" {
		t.Fatalf("evicted %s, want the oldest in order [0 1 2 3 4 5 6]", got)
	}
	if got := fmt.Sprint(drainAll(q)); got != "[7 8 9]" {
		t.Fatalf("Drain %s, want the newest in order [7 8 9]", got)
	}
	// The ring wrapped; it must still work after draining.
	q.Push(pkt(10))
	q.Push(pkt(11))
	if got := fmt.Sprint(drainAll(q)); got != "[10 11]" {
		t.Fatalf("Drain after wrap %s, want [10 11]", got)
	}
}

func TestQueueDrainWithRequeueTerminates(t *testing.T) {
	q := NewQueue(4)
	for i := range 4 {
		q.Push(pkt(i))
	}
	var seen int
	q.Drain(func(p []byte) { seen++; q.Push(p) }) // "no key yet": put it back
	if seen != 4 || q.Len() != 4 {
		t.Fatalf("Drain saw %d packets, queue holds %d; want 4 and 4", seen, q.Len())
	}
	if got := fmt.Sprint(drainAll(q)); got != "[0 1 2 3]" {
		t.Fatalf("requeued order %s, want [0 1 2 3]", got)
	}
}

func TestQueueCapacityAtLeastOne(t *testing.T) {
	for _, c := range []int{-5, 0} {
		q := NewQueue(c)
		if q.Cap() != 1 {
			t.Fatalf("NewQueue(%d).Cap() = %d, want 1", c, q.Cap())
		}
		q.Push(pkt(1))
		if ev, dropped := q.Push(pkt(2)); !dropped || string(ev) != "1" {
			t.Fatalf("Push on full 1-queue = %q, %v; want \"1\", true", ev, dropped)
		}
	}
}

func TestQueueDoesNotAllocateInSteadyState(t *testing.T) {
	q := NewQueue(8)
	b := []byte("x")
	if n := testing.AllocsPerRun(1000, func() { q.Push(b); q.Push(b); q.Drain(func([]byte) {}) }); n != 0 {
		t.Fatalf("Push/Drain allocate %v times per run", n)
	}
}
