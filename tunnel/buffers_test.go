package tunnel

import (
	"slices"
	"testing"
)

// After a reload lowers the limit (peers removed, their pending queues
// gone), the buffers beyond it are let go as they come back, not kept on
// the free list at the old high-water mark; and the pool never hands out
// more than the new limit, even while the old buffers are still out.
func TestBufferPoolShrinksToALoweredLimit(t *testing.T) {
	p := newBufferPool(8)
	var out []*[bufferSize]byte
	for range 8 {
		out = append(out, p.Get())
	}
	p.SetLimit(2)
	if p.TryGet() != nil {
		t.Fatal("pool handed out a 9th buffer under a limit of 2")
	}
	for _, b := range out[:7] {
		p.Put(b)
	}
	// 1 still out: one more may go, and no other.
	again := p.TryGet()
	if again == nil {
		t.Fatal("pool refused a 2nd buffer under a limit of 2")
	}
	if p.TryGet() != nil {
		t.Fatal("pool handed out a 3rd buffer under a limit of 2")
	}
	p.Put(out[7])
	p.Put(again)
	p.mu.Lock()
	kept := len(p.free)
	p.mu.Unlock()
	if kept != 2 {
		t.Fatalf("%d buffers kept under a limit of 2, want 2 (more holds memory, fewer makes new ones)", kept)
	}
	for range 2 { // the pool still serves up to its limit, from what it kept
		b := p.TryGet()
		if b == nil {
			t.Fatal("pool refused a buffer under its limit")
		}
		if !slices.Contains(out, b) {
			t.Fatal("pool made a new buffer while it had kept one")
		}
	}
	if p.TryGet() != nil {
		t.Fatal("pool handed out a 3rd buffer under a limit of 2")
	}
}

func BenchmarkBufferPoolGetPut(b *testing.B) {
	p := newBufferPool(64)
	for b.Loop() {
		p.Put(p.Get())
	}
}
