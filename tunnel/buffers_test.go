package tunnel

import "testing"

// After a reload lowers the limit (peers removed, their pending queues
// gone), the buffers beyond it are let go as they come back, not kept on
// the free list at the old high-water mark.
func TestBufferPoolShrinksToALoweredLimit(t *testing.T) {
	p := newBufferPool(8)
	var out []*[bufferSize]byte
	for range 8 {
		out = append(out, p.Get())
	}
	p.SetLimit(2)
	for _, b := range out {
		p.Put(b)
	}
	p.mu.Lock()
	kept := len(p.free)
	p.mu.Unlock()
	if kept > 2 {
		t.Fatalf("%d buffers kept under a limit of 2", kept)
	}
	for range 2 { // and the pool still serves up to its limit
		if p.TryGet() == nil {
			t.Fatal("pool refused a buffer under its limit")
		}
	}
}

func BenchmarkBufferPoolGetPut(b *testing.B) {
	p := newBufferPool(64)
	for b.Loop() {
		p.Put(p.Get())
	}
}
