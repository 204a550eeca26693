package tunnel

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"

	"stunnel/rekey"
	"stunnel/session"
)

// outBatch is a run of one peer's packets sealed under one keypair. Each
// packet is a pool buffer: header, then plaintext of sizes[i] bytes; the
// encrypt worker seals in place and sets packets[i] to header+ciphertext.
// The batch is owned by the sending goroutine until it is queued, then
// shared read-only with one worker until done is unlocked, then owned by
// the peer's sender, which returns the buffers to the pool.
type outBatch struct {
	done    sync.Mutex // held until the batch is sealed
	aborted bool       // set before done is unlocked if it was never sealed: drop, never send
	peer    *Peer
	keypair *rekey.Keypair
	packets [][]byte
	data    bool // holds at least one non-empty packet (not only keepalives)
}

var outBatchPool = sync.Pool{New: func() any { return new(outBatch) }}

// releaseOut returns a batch and its buffers to their pools; done must be
// unlocked (the batch is not in any queue or worker).
func (d *Device) releaseOut(b *outBatch) {
	for _, pkt := range b.packets {
		d.pool.Put(bufferOf(pkt))
	}
	clear(b.packets)
	b.packets = b.packets[:0]
	b.peer, b.keypair, b.data, b.aborted = nil, nil, false, false
	outBatchPool.Put(b)
}

// staged is one peer's share of a TUN read, kept between reads to avoid
// allocating per batch.
type staged struct {
	peer    *Peer
	packets [][]byte // pool buffers, header room then plaintext
}

// readyTUN is a TUN that can be read without waiting and waited on apart
// from reading (tundev.Device). With it, the TUN reader holds tunOut only
// while it reads and sends, and a UDP reader that just wrote to the TUN can
// take the reply itself (pickUpReplies) instead of waking the TUN reader:
// one thread wake-up less per round trip.
type readyTUN interface {
	ReadReady(bufs [][]byte, sizes []int, offset int) (int, error)
	WaitReadable() error
}

// tunReader is the buffers and scratch of one goroutine that reads the TUN.
type tunReader struct {
	bufs  [][]byte
	sizes []int
	stage []staged
}

func newTUNReader(batch int) *tunReader {
	return &tunReader{bufs: make([][]byte, batch), sizes: make([]int, batch)}
}

// fill gives every empty slot a pool buffer; false once the pool is closed.
func (r *tunReader) fill(pool *bufferPool) bool {
	for i := range r.bufs {
		if r.bufs[i] == nil {
			b := pool.Get()
			if b == nil {
				return false
			}
			r.bufs[i] = b[:]
		}
	}
	return true
}

// readTUN is the goroutine reading the TUN device: it routes each packet
// to its peer by destination and hands each peer's packets on as a batch.
func (d *Device) readTUN() {
	r := newTUNReader(d.tun.BatchSize())
	ready := d.ready
	failures := 0
	for {
		if !r.fill(d.pool) {
			d.returnBuffers(r.bufs)
			return
		}
		var n int
		var err error
		if ready != nil {
			// Read and send under tunOut, so packets leave in the order
			// they were read whichever goroutine reads them; wait outside.
			d.tunOut.Lock()
			n, err = ready.ReadReady(r.bufs, r.sizes, headerLen)
			if err == nil && n > 0 {
				d.routeOut(r, n)
			}
			d.tunOut.Unlock()
			if err == nil && n == 0 {
				err = ready.WaitReadable()
			}
		} else {
			n, err = d.tun.Read(r.bufs, r.sizes, headerLen)
			if err == nil || errors.Is(err, tun.ErrTooManySegments) {
				d.routeOut(r, n)
				err = nil
			}
		}
		if err != nil {
			failures++
			if d.isClosed() || errors.Is(err, os.ErrClosed) || failures == maxReadFailures {
				d.returnBuffers(r.bufs)
				if !d.isClosed() {
					d.fail(fmt.Errorf("%s: reading from the TUN device: %w", d.name, err))
				}
				return
			}
			d.warn.warn("tun-read", "reading from TUN failed", "interface", d.name, "err", err)
			continue
		}
		failures = 0
	}
}

// pickUpReplies reads what the TUN has ready right now, if no other
// goroutine is reading it, and sends it. A UDP reader calls it after
// writing to the TUN: the kernel often answers such a write at once (an
// ICMP echo reply, a TCP ACK), and sending that from here saves waking the
// TUN reader on another core (ping round trip: see docs/PERFORMANCE.md).
func (d *Device) pickUpReplies(r *tunReader) {
	ready := d.ready
	if ready == nil || !d.tunOut.TryLock() {
		return
	}
	defer d.tunOut.Unlock()
	if !r.fill(d.pool) {
		return
	}
	n, err := ready.ReadReady(r.bufs, r.sizes, headerLen)
	if n > 0 {
		d.routeOut(r, n)
	}
	if err != nil && !d.isClosed() && !errors.Is(err, os.ErrClosed) {
		// The TUN reader sees a lasting failure itself; one bad frame is
		// worth a (rate-limited) line.
		d.warn.warn("tun-read", "reading from TUN failed", "interface", d.name, "err", err)
	}
}

// routeOut routes the n packets just read into r.bufs to their peers and
// sends each peer's share as one batch; the sent buffers' slots are emptied.
func (d *Device) routeOut(r *tunReader, n int) {
	set := d.peers.Load()
	stage := r.stage[:0]
	for i := range n {
		pkt := r.bufs[i][headerLen : headerLen+r.sizes[i]]
		dst, ok := ipDestination(pkt)
		if !ok {
			d.drops.add(dropMalformed, 1)
			continue
		}
		p, ok := set.routes.Lookup(dst)
		if !ok {
			if !linkChatter(dst) {
				d.drops.add(dropNoRoute, 1)
			}
			continue
		}
		j := 0
		for j < len(stage) && stage[j].peer != p {
			j++
		}
		if j == len(stage) {
			if j < cap(stage) { // reuse the element's packets slice too
				stage = stage[:j+1]
				stage[j].peer = p
			} else {
				stage = append(stage, staged{peer: p})
			}
		}
		stage[j].packets = append(stage[j].packets, r.bufs[i][:headerLen+r.sizes[i]])
		r.bufs[i] = nil
	}
	for j := range stage {
		stage[j].peer.send(stage[j].packets)
		clear(stage[j].packets)
		stage[j].packets = stage[j].packets[:0]
		stage[j].peer = nil
	}
	r.stage = stage
}

func (d *Device) returnBuffers(bufs [][]byte) {
	for i, b := range bufs {
		if b != nil {
			d.pool.Put(bufferOf(b))
			bufs[i] = nil
		}
	}
}

// send seals and sends packets (pool buffers, header room then plaintext;
// ownership passes to send). Without a usable key they wait in the pending
// queue and a handshake is started.
func (p *Peer) send(packets [][]byte) {
	d := p.d
	if !p.enter() { // removed by a reload: nobody would ever send these
		for _, pkt := range packets {
			d.pool.Put(bufferOf(pkt))
		}
		return
	}
	defer p.leave()
	now := d.now()
	kp := p.sess.Current(now)
	if kp == nil {
		p.queuePending(packets)
		return
	}
	maxBatch := d.bind.BatchSize()
	b := outBatchPool.Get().(*outBatch)
	b.peer, b.keypair = p, kp
	for i, pkt := range packets {
		counter, ok := kp.NextNonce(now)
		if !ok { // key used up or too old: the rest waits for the next one
			p.queuePending(packets[i:])
			break
		}
		writeDataHeader(pkt, kp.RemoteIndex, counter)
		b.data = b.data || len(pkt) > headerLen
		b.packets = append(b.packets, pkt)
		if len(b.packets) == maxBatch {
			d.dispatchOut(b)
			b = outBatchPool.Get().(*outBatch)
			b.peer, b.keypair = p, kp
		}
	}
	if len(b.packets) > 0 {
		d.dispatchOut(b)
	} else {
		outBatchPool.Put(b)
	}
	if kp.NeedsRekeyOnSend(now) {
		p.wantHandshake()
	}
}

// dispatchOut queues a batch for sealing, in order on its peer's queue and
// for any worker on the shared one. It blocks while the queues are full:
// back-pressure to the TUN reader instead of dropping.
func (d *Device) dispatchOut(b *outBatch) {
	p := b.peer
	if len(b.packets) <= d.inlineLimit && p.outInFlight.CompareAndSwap(0, 1) {
		// Nothing of this peer's is in flight, so sealing and sending right
		// here keeps its order, and saves the two goroutine hand-offs that
		// dominate a lone packet's latency (a ping, a TCP ACK).
		b.seal(&p.inlineSealNonce)
		p.transmit(b)
		p.outInFlight.Add(-1)
		return
	}
	p.outInFlight.Add(1)
	b.done.Lock()
	if !handOff(d, p, b, &b.done, &b.aborted, p.sendQueue, d.encryptQ) {
		p.outInFlight.Add(-1)
		d.releaseOut(b)
	}
}

// handOff queues a batch whose done mutex is held: first on its peer's
// in-order queue, then on the crypto workers' queue. It returns false, with
// done unlocked, if the peer or the device stopped before the batch was
// queued; the caller then releases it. Shared by dispatchOut and dispatchIn.
func handOff[B any](d *Device, p *Peer, b B, done *sync.Mutex, aborted *bool, inOrder, work chan B) bool {
	select {
	case inOrder <- b:
	case <-p.stopping:
		done.Unlock()
		return false
	case <-d.closed:
		done.Unlock()
		return false
	}
	select {
	case work <- b:
	case <-d.workersQuit: // not reached in practice: peers stop before the workers
		*aborted = true
		done.Unlock()
	}
	return true
}

// queuePending parks packets until a handshake gives a key, dropping the
// oldest beyond the bound, and asks for that handshake.
func (p *Peer) queuePending(packets [][]byte) {
	p.mu.Lock()
	for _, pkt := range packets {
		if evicted, dropped := p.pending.Push(pkt); dropped {
			p.drops.add(dropQueueFull, 1)
			p.d.pool.Put(bufferOf(evicted))
		}
	}
	p.mu.Unlock()
	p.wantHandshake()
}

// flushPending sends what waited for a key, in order, once one exists.
func (p *Peer) flushPending() {
	var packets [][]byte
	p.mu.Lock()
	p.pending.Drain(func(pkt []byte) { packets = append(packets, pkt) })
	p.mu.Unlock()
	if len(packets) > 0 {
		p.send(packets)
	}
}

// sendKeepalive sends an empty authenticated packet, if a key exists;
// without one, a persistent keepalive handshakes instead (keepPathOpen).
func (p *Peer) sendKeepalive() {
	if p.sess.Current(p.d.now()) == nil {
		p.keepPathOpen()
		return
	}
	b := p.d.pool.TryGet()
	if b == nil {
		return // out of buffers: data is flowing, no keepalive needed
	}
	p.send([][]byte{b[:headerLen]})
}

// seal encrypts every packet of the batch in place under its counter.
func (b *outBatch) seal(nonce *[12]byte) {
	aead := b.keypair.Send
	for i, pkt := range b.packets {
		putNonce(nonce, dataCounter(pkt))
		b.packets[i] = aead.Seal(pkt[:headerLen], nonce[:], pkt[headerLen:], nil)
	}
}

// encryptWorker seals batches on whatever core is free.
func (d *Device) encryptWorker() {
	var nonce [12]byte
	for {
		select {
		case b := <-d.encryptQ:
			b.seal(&nonce)
			b.done.Unlock()
		case <-d.workersQuit:
			return
		}
	}
}

// runSender sends the peer's sealed batches in the order they were numbered.
func (p *Peer) runSender() {
	d := p.d
	for {
		var b *outBatch
		select {
		case b = <-p.sendQueue:
		case <-p.stopping:
			return
		}
		b.done.Lock()
		b.done.Unlock()
		if b.aborted {
			d.releaseOut(b)
		} else {
			p.transmit(b)
		}
		p.outInFlight.Add(-1)
	}
}

// transmit sends a sealed batch to the peer's endpoint, accounts for it and
// releases it.
func (p *Peer) transmit(b *outBatch) {
	d := p.d
	ep := p.currentEndpoint()
	if ep == nil {
		p.drops.add(dropNoEndpoint, uint64(len(b.packets)))
		p.sess.SetProblem(session.Problem{Reason: session.ReasonNoEndpoint, At: d.now()})
		d.releaseOut(b)
		return
	}
	// The silence clock (failover_after) starts before the send, as for an
	// initiation: the answer can be read before Send returns, and a clock
	// started after it would run on until the next answer. A send that
	// fails counts as unanswered: an unreachable gateway is left too.
	now := d.now()
	p.fo.sent(now)
	if err := d.bind.Send(b.packets, ep); err != nil {
		if !d.isClosed() {
			d.warn.warn("udp-send-"+p.id, "sending to peer failed", "peer", p.id, "endpoint", ep.DstToString(), "err", err)
		}
	} else {
		var bytes uint64
		for _, pkt := range b.packets {
			bytes += uint64(len(pkt))
		}
		p.txBytes.Add(bytes)
		p.txPackets.Add(uint64(len(b.packets)))
		p.sess.Sent(b.data, now)
		p.rearm() // once per batch; a shared lock only if a timer was armed earlier
	}
	d.releaseOut(b)
}
