package tunnel

import (
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// endpointIndex lists the peers by the address of their current endpoint,
// for the intake of cookie replies (takeCookie). A cookie reply names no
// receiver index (docs/PROTOCOL.md, "Cookie reply (type 3)"): only its
// source says whose answer it may be, and anyone can send one, no key
// needed. Comparing every configured peer's endpoint with that source cost
// the UDP reader, which also carries the established tunnels' data, a scan
// of the whole peer list per junk datagram (~100 us with 10,000 peers,
// BenchmarkJunkCookieReply); a map lookup costs the same for any number.
//
// Why keyed by the current endpoint, and not by where each peer sent its
// last initiation: the current endpoint is the rule itself (a reply is
// taken only from the peer's current endpoint, and only if it opens with
// the mac1 of the peer's last initiation, ConsumeCookieReply), so the index
// changes how the peers at the source are found, never which reply is
// taken. Keyed by the last initiation's address it would also refuse a
// reply from an address the peer roamed to after it initiated. Keeping the
// index in step costs a lock and a few pointer updates when an endpoint is
// set or roams to a new address, never on a packet that leaves it as it is.
//
// Size: a peer is listed under one address at a time, the one its endpoint
// holds, and only while configured: Reload (also for peers the directory
// removes, which reach the data plane through Reload) unlists a peer it
// removes, a stopped peer is never listed again, and Close empties the
// index. So it holds at most one entry per configured peer with an
// endpoint; peers sharing an endpoint share the entry (a list through
// Peer.atNext), and each is tried.
type endpointIndex struct {
	// mu guards at, and the atKey, atListed and atNext of every Peer. Each
	// write of a Peer's endpoint is made under it too (storeEndpoint), so a
	// peer is listed exactly under the address its endpoint holds. Owned by
	// the Device; the UDP readers (takeCookie) take it shared and open the
	// reply under it. Lock order: mu before the session's locks; never held
	// with p.mu.
	mu sync.RWMutex
	at map[netip.AddrPort]*Peer // the first peer at an address; the others follow by Peer.atNext
}

// storeEndpoint makes ep the peer's endpoint and lists the peer under its
// address. Every write of p.endpoint goes through here. A stopped peer
// (removed by a reload, or the device closing) is unlisted, not listed:
// a lookup that ends after it was removed cannot put it back.
func (p *Peer) storeEndpoint(ep conn.Endpoint) {
	x := &p.d.endpoints
	x.mu.Lock()
	defer x.mu.Unlock()
	p.endpoint.Store(&ep)
	x.unlistLocked(p)
	if !p.stopped.Load() {
		if x.at == nil {
			x.at = make(map[netip.AddrPort]*Peer)
		}
		key := addrPortOf(ep) // the address sameEndpoint compares
		p.atKey, p.atNext, p.atListed = key, x.at[key], true
		x.at[key] = p
	}
}

// remove unlists a peer that a reload removed; it was stopped first, so it
// is not listed again.
func (x *endpointIndex) remove(p *Peer) {
	x.mu.Lock()
	x.unlistLocked(p)
	x.mu.Unlock()
}

// clear empties the index at Close, once every peer stopped.
func (x *endpointIndex) clear() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.at {
		for p != nil {
			next := p.atNext
			p.atNext, p.atListed = nil, false
			p = next
		}
	}
	x.at = nil
}

func (x *endpointIndex) unlistLocked(p *Peer) {
	if !p.atListed {
		return
	}
	if head := x.at[p.atKey]; head == p {
		if p.atNext != nil {
			x.at[p.atKey] = p.atNext
		} else {
			delete(x.at, p.atKey)
		}
	} else {
		for q := head; q != nil; q = q.atNext {
			if q.atNext == p {
				q.atNext = p.atNext
				break
			}
		}
	}
	p.atNext, p.atListed = nil, false
}

// takeCookie gives a cookie reply to the peer whose current endpoint it
// comes from (only those were sent an initiation to answer) and returns
// that peer if the reply opened with the mac1 of its last initiation, nil
// otherwise. A map lookup, then one AEAD open of 32 bytes per peer at that
// endpoint that waits for a cookie (endpointIndex).
func (d *Device) takeCookie(msg []byte, ep conn.Endpoint) *Peer {
	x := &d.endpoints
	x.mu.RLock()
	defer x.mu.RUnlock()
	for p := x.at[addrPortOf(ep)]; p != nil; p = p.atNext {
		if p.sess.ConsumeCookieReply(msg) == nil {
			return p
		}
	}
	return nil
}
