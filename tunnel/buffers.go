package tunnel

import (
	"sync"
)

// bufferPool hands out packet buffers of bufferSize bytes and bounds how many
// exist at once: Get blocks while limit buffers are out, so a flood can slow
// the tunnel down but never grow its memory without bound (the OOM reports
// against unbounded pools in ANCHORS.md). Safe for concurrent use.
type bufferPool struct {
	pool   sync.Pool
	tokens chan struct{} // one token per buffer that may exist outside the pool
}

func newBufferPool(limit int) *bufferPool {
	p := &bufferPool{tokens: make(chan struct{}, limit)}
	p.pool.New = func() any { return new([bufferSize]byte) }
	return p
}

// Get returns a buffer, borrowed until Put. It blocks while the pool is at
// its limit and returns nil if stop closes first.
func (p *bufferPool) Get(stop <-chan struct{}) *[bufferSize]byte {
	select {
	case p.tokens <- struct{}{}:
	case <-stop:
		return nil
	}
	return p.pool.Get().(*[bufferSize]byte)
}

// TryGet returns a buffer, or nil at once if the pool is at its limit.
func (p *bufferPool) TryGet() *[bufferSize]byte {
	select {
	case p.tokens <- struct{}{}:
		return p.pool.Get().(*[bufferSize]byte)
	default:
		return nil
	}
}

// Put returns a buffer; the caller must not touch it afterwards.
func (p *bufferPool) Put(b *[bufferSize]byte) {
	p.pool.Put(b)
	<-p.tokens
}

// bufferOf recovers the pool buffer behind a packet slice that starts at the
// buffer's first byte.
func bufferOf(b []byte) *[bufferSize]byte { return (*[bufferSize]byte)(b[:bufferSize:bufferSize]) }
