package rekey

// Queue is a bounded FIFO of packets waiting for a key (a handshake is
// pending). When full, Push evicts the oldest: the newest packets are the ones
// a sender still cares about. Memory stays bounded on small machines.
//
// Not safe for concurrent use: the caller holds the peer's lock. Buffers are
// owned by the queue while in it; Push hands back the one it evicted and Drain
// hands each one to fn, so the caller can return them to its pool.
type Queue struct {
	buf  [][]byte // ring; len(buf) is the capacity
	head int      // index of the oldest packet
	n    int      // packets in the queue
}

// NewQueue returns a queue holding at most capacity packets (at least 1).
func NewQueue(capacity int) *Queue {
	return &Queue{buf: make([][]byte, max(capacity, 1))}
}

// Push appends pkt. If the queue was full it evicts the oldest packet and
// returns it with dropped=true, so the caller counts the drop.
func (q *Queue) Push(pkt []byte) (evicted []byte, dropped bool) {
	if q.n == len(q.buf) {
		evicted = q.buf[q.head]
		q.buf[q.head] = pkt
		q.head = (q.head + 1) % len(q.buf)
		return evicted, true
	}
	q.buf[(q.head+q.n)%len(q.buf)] = pkt
	q.n++
	return nil, false
}

// Drain calls fn with each packet, oldest first; the queue no longer
// references them afterwards. Packets fn pushes back (say, the key expired
// meanwhile) stay queued for the next Drain instead of looping here.
func (q *Queue) Drain(fn func(pkt []byte)) {
	for count := q.n; count > 0; count-- {
		pkt := q.buf[q.head]
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		fn(pkt)
	}
}

// Len returns the number of packets waiting.
func (q *Queue) Len() int { return q.n }

// Cap returns the capacity.
func (q *Queue) Cap() int { return len(q.buf) }
