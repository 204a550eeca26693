package tunnel

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/handshake"
	"stunnel/rekey"
)

// inBatch is a run of received data packets under one keypair. The UDP
// reader owns it until queued; one decrypt worker then opens every packet in
// place (sizes[i] = plaintext length, or -1 if it did not authenticate) and
// unlocks done; the peer's receiver then owns it and returns the buffers.
type inBatch struct {
	done      sync.Mutex // held until the batch is opened
	aborted   bool       // set before done is unlocked if it was never opened: drop, never deliver
	peer      *Peer
	keypair   *rekey.Keypair
	packets   [][]byte // pool buffers holding whole datagrams
	sizes     []int
	endpoints []conn.Endpoint
}

var inBatchPool = sync.Pool{New: func() any { return new(inBatch) }}

// releaseIn returns a batch and its buffers to their pools; done must be
// unlocked (the batch is not in any queue or worker).
func (d *Device) releaseIn(b *inBatch) {
	for _, pkt := range b.packets {
		d.pool.Put(bufferOf(pkt))
	}
	clear(b.packets)
	clear(b.endpoints)
	b.packets, b.sizes, b.endpoints = b.packets[:0], b.sizes[:0], b.endpoints[:0]
	b.peer, b.keypair, b.aborted = nil, nil, false
	inBatchPool.Put(b)
}

// readUDP is one goroutine per receive function of the bind (IPv4, IPv6):
// it sorts datagrams into data batches per keypair and handshake messages.
func (d *Device) readUDP(recv conn.ReceiveFunc) {
	batch := d.bind.BatchSize()
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	var replies *tunReader // for pickUpReplies; made on first use
	defer func() {
		if replies != nil {
			d.returnBuffers(replies.bufs)
		}
	}()
	failures := 0
	for {
		for i := range bufs {
			if bufs[i] == nil {
				b := d.pool.Get()
				if b == nil {
					d.returnBuffers(bufs)
					return
				}
				bufs[i] = b[:]
			}
		}
		n, err := recv(bufs, sizes, eps)
		if err != nil {
			failures++
			if d.isClosed() || errors.Is(err, net.ErrClosed) || failures == maxReadFailures {
				d.returnBuffers(bufs)
				if !d.isClosed() {
					d.fail(fmt.Errorf("%s: reading from UDP: %w", d.name, err))
				}
				return
			}
			d.warn.warn("udp-read", "reading from UDP failed", "interface", d.name, "err", err)
			continue
		}
		failures = 0
		var cur *inBatch
		var curIndex uint32
		delivered := false
		for i := range n {
			msg := bufs[i][:sizes[i]]
			if sizes[i] == 0 {
				// An empty datagram: malformed, and counted like any
				// other (its endpoint may be unset: wireguard-go's binds
				// leave it so).
				d.dropMalformedFrom(eps[i], "dropped an empty datagram")
				continue
			}
			if idx, ok := dataReceiver(msg); ok {
				if cur == nil || idx != curIndex {
					d.dispatchIn(cur)
					cur = d.newInBatch(idx)
					curIndex = idx
				}
				if cur == nil {
					d.drops.add(dropUnknownIndex, 1)
					d.warn.warnFrom(addrPortOf(eps[i]).Addr(), "unknown-index", "dropped data packet for an unknown session (peer restarted, or stale)", "from", eps[i].DstToString())
					continue
				}
				cur.packets = append(cur.packets, msg)
				cur.endpoints = append(cur.endpoints, eps[i])
				delivered = delivered || len(msg) > headerLen+tagLen
				bufs[i] = nil
				if len(cur.packets) == batch {
					d.dispatchIn(cur)
					cur = d.newInBatch(idx)
				}
				continue
			}
			d.queueHandshake(msg, eps[i])
		}
		d.dispatchIn(cur)
		if delivered {
			if replies == nil {
				replies = newTUNReader(d.tun.BatchSize())
			}
			d.pickUpReplies(replies)
		}
	}
}

// newInBatch starts a batch for the keypair behind a receiver index, or
// returns nil if the index names no keypair.
func (d *Device) newInBatch(idx uint32) *inBatch {
	e, ok := d.indices.lookup(idx)
	if !ok || e.keypair == nil {
		return nil
	}
	b := inBatchPool.Get().(*inBatch)
	b.peer, b.keypair = e.peer, e.keypair
	return b
}

// dispatchIn queues a batch for opening, in order on its peer's queue and for
// any worker on the shared one.
func (d *Device) dispatchIn(b *inBatch) {
	if b == nil {
		return
	}
	if len(b.packets) == 0 {
		inBatchPool.Put(b)
		return
	}
	p := b.peer
	if !p.enter() { // removed by a reload
		d.releaseIn(b)
		return
	}
	defer p.leave()
	if len(b.packets) <= d.inlineLimit && p.inInFlight.CompareAndSwap(0, 1) {
		// Nothing of this peer's is in flight: finish it right here (see
		// dispatchOut).
		b.open(&p.inlineOpenNonce)
		p.deliverScratch = p.deliver(b, p.deliverScratch)
		p.inInFlight.Add(-1)
		return
	}
	p.inInFlight.Add(1)
	b.done.Lock()
	if !handOff(d, p, b, &b.done, &b.aborted, p.recvQueue, d.decryptQ) {
		p.inInFlight.Add(-1)
		d.releaseIn(b)
	}
}

// open authenticates and decrypts every packet of the batch in place;
// sizes[i] becomes the plaintext length, or -1 if it did not authenticate.
func (b *inBatch) open(nonce *[12]byte) {
	aead := b.keypair.Recv
	b.sizes = b.sizes[:0]
	for _, pkt := range b.packets {
		putNonce(nonce, dataCounter(pkt))
		plain, err := aead.Open(pkt[headerLen:headerLen], nonce[:], pkt[headerLen:], nil)
		if err != nil {
			b.sizes = append(b.sizes, -1)
		} else {
			b.sizes = append(b.sizes, len(plain))
		}
	}
}

// decryptWorker opens batches on whatever core is free.
func (d *Device) decryptWorker() {
	var nonce [12]byte
	for {
		select {
		case b := <-d.decryptQ:
			b.open(&nonce)
			b.done.Unlock()
		case <-d.workersQuit:
			return
		}
	}
}

// runReceiver finishes the peer's opened batches in arrival order.
func (p *Peer) runReceiver() {
	var toTUN [][]byte
	for {
		var b *inBatch
		select {
		case b = <-p.recvQueue:
		case <-p.stopping:
			return
		}
		b.done.Lock()
		b.done.Unlock()
		if b.aborted {
			p.d.releaseIn(b)
		} else {
			toTUN = p.deliver(b, toTUN[:0])
		}
		p.inInFlight.Add(-1)
	}
}

// deliver finishes an opened batch: replay check (after authentication,
// never before), allowed source, roaming, timers, and the write to TUN; then
// releases it. toTUN is scratch space, returned for reuse.
func (p *Peer) deliver(b *inBatch, toTUN [][]byte) [][]byte {
	d := p.d
	now := d.now()
	set := d.peers.Load()
	kp := b.keypair
	var authenticated, data bool
	var lastEndpoint conn.Endpoint
	var rxBytes, rxPackets uint64
	for i, pkt := range b.packets {
		size := b.sizes[i]
		if size < 0 {
			// Keyed by source: whoever forges packets under this
			// peer's index silences only their own line.
			p.drops.add(dropAuthFailed, 1)
			if ep := b.endpoints[i]; ep != nil {
				d.warn.warnFrom(addrPortOf(ep).Addr(), "auth-failed", "dropped a data packet that failed authentication (corrupted or forged)",
					"peer", p.id, "from", ep.DstToString())
			}
			continue
		}
		switch kp.CheckCounter(dataCounter(pkt), now) {
		case rekey.Replayed:
			p.drops.add(dropReplayed, 1)
			continue
		case rekey.KeyExpired:
			p.drops.add(dropKeyExpired, 1)
			continue
		}
		authenticated = true
		lastEndpoint = b.endpoints[i]
		rxBytes += uint64(len(pkt))
		rxPackets++
		if size == 0 {
			continue // keepalive
		}
		inner := pkt[headerLen : headerLen+size]
		if inner[0] == handshake.ControlMarker { // a session control message (a new ticket), not an IP packet
			p.controlReceived(inner, kp)
			continue
		}
		src, length, ok := ipSource(inner)
		if !ok {
			p.drops.add(dropMalformed, 1)
			d.warn.warn("inner-"+p.id, "dropped an authenticated packet that is no IPv4 or IPv6 packet", "peer", p.id)
			continue
		}
		if !set.allowedSource(p, src) {
			p.drops.add(dropSourceNotAllowed, 1)
			d.warn.warn("src-"+p.id, "dropped packet from a source outside the peer's allowed_ips", "peer", p.id, "source", src.String())
			continue
		}
		data = true
		toTUN = append(toTUN, pkt[:headerLen+length])
	}
	if authenticated {
		p.rxBytes.Add(rxBytes)
		p.rxPackets.Add(rxPackets)
		if p.followsSession(kp) { // before Received: a confirmed next is promoted there
			p.roam(lastEndpoint)
		}
		promoted, rekeyNow := p.sess.Received(kp, data, now)
		p.rearm()     // once per batch; a shared lock only if a timer was armed earlier
		if promoted { // we were the responder; the initiator just confirmed
			var cipher handshake.Cipher
			if e, ok := d.indices.lookup(kp.LocalIndex); ok {
				cipher = e.cipher
			}
			d.log.Info("handshake complete", "peer", p.id, "role", "responder", "cipher", cipher.String(),
				"endpoint", lastEndpoint.DstToString())
			p.flushPending()
			if msg := p.sess.TicketFor(kp); msg != nil {
				p.sendControl(msg)
			}
		}
		if rekeyNow {
			p.wantHandshake()
		}
	}
	if len(toTUN) > 0 {
		if _, err := d.tun.Write(toTUN, headerLen); err != nil && !d.isClosed() {
			d.warn.warn("tun-write", "writing to TUN failed", "interface", d.name, "err", err)
		}
	}
	clear(toTUN)
	d.releaseIn(b)
	return toTUN[:0]
}

// roam makes the address of the peer's latest authenticated, non-replayed
// packet its endpoint, so a peer that changes networks keeps its tunnel,
// and counts the packet as the endpoint in use answering (failover_after).
//
// As in WireGuard, any authenticated packet roams, under any of the peer's
// keypairs, except for a peer with an endpoint group (followsSession): its
// endpoint follows the current session.
func (p *Peer) roam(ep conn.Endpoint) {
	if ep == nil {
		return
	}
	p.fo.answered()
	cur := p.currentEndpoint()
	if cur != nil && sameEndpoint(cur, ep) && cur.SrcIP() == ep.SrcIP() {
		return
	}
	// A new local address alone (the configured endpoint has none, or the
	// host's addresses changed) is taken quietly: replies leave from it.
	// storeEndpoint stores its own copy: &ep here would move ep to the
	// heap on every call, also on the usual one that returns above.
	p.storeEndpoint(ep)
	if cur != nil && !sameEndpoint(cur, ep) {
		p.d.log.Info("peer roamed", "peer", p.id, "from", cur.DstToString(), "to", ep.DstToString())
	}
}

// followsSession reports whether packets under kp may roam. For a peer with
// an endpoint group, only the current keypair (or the next one, which the
// packet confirms) does: a packet under the previous session comes from the
// gateway we failed over from, cut off and back, still holding that session
// until reject_after. Its data is delivered, but moving back there would
// send the current session to a gateway that does not know it (dropped,
// then moved back by the next packet from the gateway in use: flapping for
// minutes), and counting it as an answer would hide a silent gateway in
// use. A single endpoint keeps WireGuard's rule: any keypair roams.
func (p *Peer) followsSession(kp *rekey.Keypair) bool {
	if p.sess.Latest(kp) {
		return true
	}
	p.mu.Lock()
	group := len(p.cfg.Endpoints) > 1
	p.mu.Unlock()
	return !group
}

// sameEndpoint reports whether two endpoints are the same remote address
// and port; which local address (sticky source) they carry does not matter.
func sameEndpoint(a, b conn.Endpoint) bool {
	return addrPortOf(a) == addrPortOf(b)
}
