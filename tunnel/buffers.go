package tunnel

import "sync"

// bufferPool hands out packet buffers of bufferSize bytes and bounds how many
// exist at once: Get blocks while limit buffers are out, so a flood can slow
// the tunnel down but never grow its memory without bound (pools that grow
// with the load are a known cause of out-of-memory kills in userspace tunnels). The limit follows the number of
// peers across reloads (SetLimit), since each may hold a pending queue.
//
// Buffers are kept on a LIFO free list rather than in a sync.Pool: the most
// recently used buffer is the one still in cache, and a buffer is never
// handed to the garbage collector, so it is never zeroed again; zeroing a
// 64 KiB buffer touches all of its pages, which is what makes a churning
// pool's resident memory grow. Safe for concurrent use.
type bufferPool struct {
	mu     sync.Mutex
	cond   sync.Cond           // signalled when a buffer comes back, the limit grows, or the pool closes
	free   []*[bufferSize]byte // guarded by mu
	out    int                 // buffers handed out and not yet returned; guarded by mu
	limit  int                 // guarded by mu
	closed bool                // guarded by mu: Get returns nil from now on
}

func newBufferPool(limit int) *bufferPool {
	p := &bufferPool{limit: limit}
	p.cond.L = &p.mu
	return p
}

// Get returns a buffer, borrowed until Put. It blocks while the pool is at
// its limit and returns nil once the pool is closed.
func (p *bufferPool) Get() *[bufferSize]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.out >= p.limit && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		return nil
	}
	return p.takeLocked()
}

// TryGet returns a buffer, or nil at once if the pool is at its limit.
func (p *bufferPool) TryGet() *[bufferSize]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out >= p.limit || p.closed {
		return nil
	}
	return p.takeLocked()
}

func (p *bufferPool) takeLocked() *[bufferSize]byte {
	p.out++
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return b
	}
	return new([bufferSize]byte)
}

// Put returns a buffer; the caller must not touch it afterwards.
func (p *bufferPool) Put(b *[bufferSize]byte) {
	p.mu.Lock()
	p.out--
	if len(p.free)+p.out < p.limit { // else beyond a lowered limit (SetLimit): let it go
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
	p.cond.Signal()
}

// SetLimit changes the bound (a reload that adds or removes peers). Buffers
// beyond a lowered limit go back as they are returned.
func (p *bufferPool) SetLimit(limit int) {
	p.mu.Lock()
	p.limit = limit
	if extra := len(p.free) + p.out - limit; extra > 0 {
		n := min(extra, len(p.free))
		clear(p.free[len(p.free)-n:])
		p.free = p.free[:len(p.free)-n]
	}
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Close wakes every waiting Get, which returns nil.
func (p *bufferPool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

// inUse reports how many buffers are out (tests check for leaks with it).
func (p *bufferPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out
}

// bufferOf recovers the pool buffer behind a packet slice that starts at the
// buffer's first byte.
func bufferOf(b []byte) *[bufferSize]byte { return (*[bufferSize]byte)(b[:bufferSize:bufferSize]) }
