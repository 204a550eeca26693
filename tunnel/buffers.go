package tunnel

import "sync"

// bufferPool hands out packet buffers of bufferSize bytes and bounds how many
// exist at once: Get blocks while limit buffers are out, so a flood can slow
// the tunnel down but never grow its memory without bound (the OOM reports
// against unbounded pools in ANCHORS.md).
//
// Buffers are kept on a LIFO free list rather than in a sync.Pool: the most
// recently used buffer is the one still in cache, and a buffer is never
// handed to the garbage collector, so it is never zeroed again; zeroing a
// 64 KiB buffer touches all of its pages, which is what makes a churning
// pool's resident memory grow. Safe for concurrent use.
type bufferPool struct {
	tokens chan struct{} // one token per buffer outside the free list

	mu   sync.Mutex
	free []*[bufferSize]byte // guarded by mu
}

func newBufferPool(limit int) *bufferPool {
	return &bufferPool{tokens: make(chan struct{}, limit)}
}

// Get returns a buffer, borrowed until Put. It blocks while the pool is at
// its limit and returns nil if stop closes first.
func (p *bufferPool) Get(stop <-chan struct{}) *[bufferSize]byte {
	select {
	case p.tokens <- struct{}{}:
	case <-stop:
		return nil
	}
	return p.take()
}

// TryGet returns a buffer, or nil at once if the pool is at its limit.
func (p *bufferPool) TryGet() *[bufferSize]byte {
	select {
	case p.tokens <- struct{}{}:
		return p.take()
	default:
		return nil
	}
}

func (p *bufferPool) take() *[bufferSize]byte {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return new([bufferSize]byte)
}

// Put returns a buffer; the caller must not touch it afterwards.
func (p *bufferPool) Put(b *[bufferSize]byte) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
	<-p.tokens
}

// bufferOf recovers the pool buffer behind a packet slice that starts at the
// buffer's first byte.
func bufferOf(b []byte) *[bufferSize]byte { return (*[bufferSize]byte)(b[:bufferSize:bufferSize]) }
