package tunnel

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/handshake"
)

// The handshake intake. Everything a stranger can send without a key is
// sorted here, on the UDP reader, before it may take any queue slot:
//
//   - only types 1 (initiation), 2 (response), 3 (cookie reply), 5 and 6
//     (resumption), each of a valid size, go further; anything else is dropped and counted
//     (malformed) at once;
//   - initiations, resumptions and responses only with a valid mac1 (bad_mac1 otherwise);
//     a response only if it names an initiation of ours that waits
//     (unknown_index otherwise); a cookie reply only if it opens, here, as
//     the answer to the last initiation we sent to the peer whose endpoint
//     it comes from (malformed otherwise): the source of a datagram is
//     easily forged, the mac1 it is sealed to is never seen off the path;
//   - under load, an initiation whose mac2 proves a cookie we issued to its
//     source (the sender showed it receives at that address) passes the
//     per-source token bucket of proven initiations (rate_limited
//     otherwise) and goes to a small queue of its own, served by its own
//     worker; any other is answered with a cookie right here, within the
//     source's cookie bucket, and takes no slot: a flood of
//     valid-mac1 initiations, which anyone who knows our public key can
//     make, costs a hash and a map lookup each and never delays a peer that
//     proved its address;
//   - when the ordinary queue is full, an initiation is answered with a
//     cookie reply right here (within its source's cookie bucket) instead of
//     being dropped silently, so a genuine initiator still gets the cookie
//     that lets it into the priority queue.
//
// Memory: the queues are channels of fixed capacity (handshakeQueueLen and
// priorityQueueLen) of copied messages of at most MaxResumptionSize bytes
// (615), so the intake holds at most (1024+64) x (615 + ~64) bytes, 0.7 MiB,
// whatever the flood; the token buckets are bounded by the limiters' tables
// (rateLimitMaxEntries, about 1 MiB each for limiter and cookieLimiter).
// What a flood does make resident is the UDP readers' 64 KiB receive
// buffers: UDP_GRO packs flood datagrams into whole buffers, so pages that
// stay untouched under light traffic fill up (measured: 9.6 MiB RSS before,
// 38 MiB after 250k valid-mac1 initiations in 3 s,
// TestHandshakeDuringValidMAC1Flood). Those buffers come from the pool and
// are bounded by bufferLimit (device.go); they are kept for reuse, not
// returned to the OS.
//
// Who charges the token buckets. Under load there are two per source:
// d.limiter for initiations that proved their source with a valid mac2,
// d.cookieLimiter for the cookie replies the unproven ones get. Only a
// proven initiation can take a token from the first: anyone can forge an
// unproven initiation from a victim's address, and if those paid the same
// bucket (as they once did) a flood of them would lock the victim's real,
// proven handshakes out. A forged flood can still use up the victim's
// cookie replies (as with a WireGuard that limited them), but a cookie
// lasts two minutes (handshake.CookieSecretLifetime) and the victim needs one.
//
// Each proven initiation under load costs its source one token of
// d.limiter, once, at the first stage that sees it under load:
//
//   - the intake, for one that arrives under load (or finds the ordinary
//     queue full). It is charged here, as it arrives, because arrival times
//     are the source's real rate: the queue behind can hold a source's
//     messages and hand them to the worker all at once, and a bucket charged
//     there would refuse a source that kept to its rate. What passes goes to
//     the priority queue marked admitted, and the worker neither checks nor
//     charges it again;
//   - the worker (admit, handshake.go), for one that arrived before the load
//     came on and waited in the ordinary queue: the intake let it through
//     uncharged, so the worker's gate is its only one. (Charged at the
//     worker's time, such a message can still meet a bunched bucket; it is
//     rare, needs the load to come on while a source's messages wait, and
//     costs the source one retry.)

// priorityQueueLen is the capacity of the queue of mac2-proven initiations.
// Each passed a per-source token bucket (RateLimitPerSecond, bursts of
// RateLimitBurst), so filling it needs many addresses that each received a
// cookie.
const priorityQueueLen = 64

// validSize reports whether n is a valid length for a handshake message of
// type typ, and false for types we do not take.
func validSize(typ byte, n int) bool {
	switch typ {
	case handshake.MessageTypeInitiation:
		return n == handshake.InitiationSize
	case handshake.MessageTypeResponse:
		return n == handshake.ResponseSize
	case handshake.MessageTypeCookieReply:
		return n == handshake.CookieReplySize
	case handshake.MessageTypeResumptionInitiation:
		return n >= handshake.MinResumptionSize && n <= handshake.MaxResumptionSize
	case handshake.MessageTypeResumptionResponse:
		return n == handshake.ResumptionResponseSize
	}
	return false
}

// dropMalformedFrom counts a datagram from ep that is no message of ours
// and logs it, rate-limited by source like the other drops a stranger
// causes (PRODUCT.md: malformed packets are dropped, counted by reason and
// logged rate-limited). ep may be nil for an empty datagram: some binds
// leave it unset.
func (d *Device) dropMalformedFrom(ep conn.Endpoint, msg string) {
	d.drops.add(dropMalformed, 1)
	if ep == nil {
		d.warn.warn("malformed", msg)
		return
	}
	d.warn.warnFrom(addrPortOf(ep).Addr(), "malformed", msg, "from", ep.DstToString())
}

// queueHandshake sorts a handshake datagram (see above). It copies what it
// queues off the reader's buffer.
func (d *Device) queueHandshake(msg []byte, ep conn.Endpoint) {
	typ, ok := handshake.MessageType(msg)
	if !ok || !validSize(typ, len(msg)) {
		d.dropMalformedFrom(ep, "dropped a malformed datagram: no stunnel message type, or the wrong size for its type")
		return
	}
	if typ == handshake.MessageTypeCookieReply {
		p := d.takeCookie(msg, ep)
		if p == nil {
			d.dropMalformedFrom(ep, "dropped a cookie reply that answers no handshake initiation of ours to that address")
			return
		}
		// The worker sends the initiation again with mac2 (X25519 work).
		// If the queue is full the cookie is kept all the same, and the
		// next retry carries it.
		select {
		case d.handshakeQ <- handshakeMessage{typ: typ, from: ep, peer: p}:
		default:
			d.drops.add(dropRateLimited, 1)
		}
		return
	}
	// mac1 costs one keyed hash: checked here, so junk never takes a slot.
	if !d.cookies.CheckMAC1(msg) {
		d.drops.add(dropBadMAC1, 1)
		d.warn.warnFrom(addrPortOf(ep).Addr(), "bad-mac1", "dropped handshake message with a bad mac1: the sender does not have our public key (wrong public_key for us in its config?)", "from", ep.DstToString())
		return
	}
	if typ == handshake.MessageTypeResponse || typ == handshake.MessageTypeResumptionResponse {
		idx, _ := handshake.PeekResponseReceiver(msg)
		if typ == handshake.MessageTypeResumptionResponse {
			idx, _ = handshake.PeekResumptionResponseReceiver(msg)
		}
		if e, ok := d.indices.lookup(idx); !ok || !e.awaitsResponse() { // not a handshake of ours in progress
			d.drops.add(dropUnknownIndex, 1)
			return
		}
		d.enqueueHandshake(d.handshakeQ, typ, msg, ep, false)
		return
	}
	src := addrPortOf(ep)
	if d.load.UnderLoad(len(d.handshakeQ)) {
		// mac2 first (one keyed hash): which bucket pays depends on it.
		if !d.cookies.CheckMAC2(msg, src) {
			// Unproven under load: all it can get is a cookie, and that
			// needs no queue and no worker.
			if !d.sendCookieWithin(msg, src, ep) {
				d.drops.add(dropRateLimited, 1)
			}
			return
		}
		// The token bucket decides before a slot is taken; this is the
		// initiation's one charge (see above).
		if !d.limiter.Allow(src.Addr()) {
			d.drops.add(dropRateLimited, 1)
			return
		}
		d.enqueueHandshake(d.handshakePrioQ, typ, msg, ep, true)
		return
	}
	select {
	case d.handshakeQ <- handshakeMessage{typ: typ, msg: append([]byte(nil), msg...), from: ep}:
	default:
		// Full of initiations that are all worth a cookie: give this one
		// its cookie now, so a genuine initiator can come back with mac2
		// (within its source's cookie bucket: a flood from few addresses
		// costs a map lookup each, not a reply each).
		d.drops.add(dropRateLimited, 1)
		_ = d.sendCookieWithin(msg, src, ep)
		d.warn.warnFrom(src.Addr(), "hs-queue-full", "handshake queue full: answering initiations with cookies (flood?)", "interface", d.name)
	}
}

// sendCookieWithin answers an initiation with a cookie reply for its
// source, within the source's cookie bucket: a flood from few addresses
// costs a map lookup each, not a reply each.
// False: the bucket refused it, and nothing was sent.
func (d *Device) sendCookieWithin(msg []byte, src netip.AddrPort, ep conn.Endpoint) bool {
	if !d.cookieLimiter.Allow(src.Addr()) {
		return false
	}
	d.sendCookie(msg, src, ep)
	return true
}

// sendCookie answers an initiation with a cookie reply for its source.
func (d *Device) sendCookie(msg []byte, src netip.AddrPort, ep conn.Endpoint) {
	if reply, err := d.cookies.CreateReply(msg, src); err == nil {
		_ = d.bind.Send([][]byte{reply}, ep)
	}
}

// enqueueHandshake copies msg into q, or drops it when q is full. admitted:
// it passed the load gates here (mac2 and the token bucket).
func (d *Device) enqueueHandshake(q chan handshakeMessage, typ byte, msg []byte, ep conn.Endpoint, admitted bool) {
	select {
	case q <- handshakeMessage{typ: typ, msg: append([]byte(nil), msg...), from: ep, admitted: admitted}:
	default:
		d.drops.add(dropRateLimited, 1)
		d.warn.warnFrom(addrPortOf(ep).Addr(), "hs-queue-full", "handshake queue full: dropping handshake messages (flood?)", "interface", d.name)
	}
}

// priorityHandshakeWorker serves the initiations that proved a cookie. It
// runs beside the ordinary workers, so however long their queue is, a
// proven initiation waits only for other proven ones.
func (d *Device) priorityHandshakeWorker() {
	for {
		select {
		case m := <-d.handshakePrioQ:
			if m.typ == handshake.MessageTypeResumptionInitiation {
				d.handleResumption(m)
			} else {
				d.handleInitiation(m)
			}
		case <-d.closed:
			return
		}
	}
}
