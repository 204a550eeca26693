package tunnel

import (
	"crypto/rand"
	"encoding/binary"
	"sync"

	"stunnel/handshake"
	"stunnel/rekey"
)

// indexEntry is what a receiver index points at: a peer's handshake in
// progress (keypair nil: a response may name it) or an established keypair.
type indexEntry struct {
	peer    *Peer
	keypair *rekey.Keypair   // set once the handshake completed
	cipher  handshake.Cipher // the keypair's AEAD, for status and logs
}

// awaitsResponse reports whether a handshake response may name this entry:
// one of our own initiations in progress. An index the responder reserved
// while it works on someone's initiation (peer and keypair both nil, see
// handleInitiation) is not one: a forged response naming it is dropped.
func (e indexEntry) awaitsResponse() bool { return e.peer != nil && e.keypair == nil }

// indexTable maps the random 32-bit receiver indices we hand out to their
// sessions, so a packet is matched to its key before any cryptography and an
// unknown index is dropped at the cost of one map lookup, before any
// cryptography (as in WireGuard: a flood of junk costs almost nothing).
// Safe for concurrent use: the receive path takes the read lock once per run
// of packets with the same index; handshakes take the write lock.
type indexTable struct {
	mu sync.RWMutex
	m  map[uint32]indexEntry
}

func newIndexTable() *indexTable { return &indexTable{m: make(map[uint32]indexEntry)} }

// reserve returns a fresh random index bound to peer, not yet usable for data.
func (t *indexTable) reserve(p *Peer) uint32 {
	var b [4]byte
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("tunnel: crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
		}
		idx := binary.LittleEndian.Uint32(b[:])
		if _, taken := t.m[idx]; !taken && idx != 0 {
			t.m[idx] = indexEntry{peer: p}
			return idx
		}
	}
}

// claim binds a given index to peer p, if it is free and not zero.
func (t *indexTable) claim(idx uint32, p *Peer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, taken := t.m[idx]; taken || idx == 0 {
		return false
	}
	t.m[idx] = indexEntry{peer: p}
	return true
}

func (t *indexTable) setKeypair(idx uint32, p *Peer, kp *rekey.Keypair, c handshake.Cipher) {
	t.mu.Lock()
	t.m[idx] = indexEntry{peer: p, keypair: kp, cipher: c}
	t.mu.Unlock()
}

func (t *indexTable) lookup(idx uint32) (indexEntry, bool) {
	t.mu.RLock()
	e, ok := t.m[idx]
	t.mu.RUnlock()
	return e, ok
}

func (t *indexTable) release(idx uint32) {
	t.mu.Lock()
	delete(t.m, idx)
	t.mu.Unlock()
}

// releaseKeypairs forgets the indices of keypairs that rekey dropped.
func (t *indexTable) releaseKeypairs(kps []*rekey.Keypair) {
	if len(kps) == 0 {
		return
	}
	t.mu.Lock()
	for _, kp := range kps {
		if e, ok := t.m[kp.LocalIndex]; ok && e.keypair == kp {
			delete(t.m, kp.LocalIndex)
		}
	}
	t.mu.Unlock()
}

// releasePeer forgets every index of a removed peer.
func (t *indexTable) releasePeer(p *Peer) {
	t.mu.Lock()
	for idx, e := range t.m {
		if e.peer == p {
			delete(t.m, idx)
		}
	}
	t.mu.Unlock()
}

// peerIndices is one peer's view of the table: the session core's Registry.
type peerIndices struct {
	t *indexTable
	p *Peer
}

func (r peerIndices) Reserve() uint32 { return r.t.reserve(r.p) }

func (r peerIndices) Claim(idx uint32) bool { return r.t.claim(idx, r.p) }

func (r peerIndices) Register(idx uint32, kp *rekey.Keypair, c handshake.Cipher) {
	r.t.setKeypair(idx, r.p, kp, c)
}

func (r peerIndices) Release(idx uint32) { r.t.release(idx) }
