package handshake

import "sync"

// The responder's static-static DH (ss = X25519(our static, the
// initiator's static)) is the same for every handshake with a peer, so it is
// computed once and remembered, as wireguard-go remembers its
// precomputedStaticStatic: a full handshake then costs the responder three
// variable-base X25519 (es, ee, se) and one fixed-base key generation,
// instead of four and a variable-base generation.
//
// What is remembered and when:
//   - only with a key in memory (a token key stays the only holder of every
//     value derived from it: each handshake asks the token, as before);
//   - only after the initiator proved that key (the whole message 1 opened
//     and the claimed ID maps to that public key): an attacker cannot fill
//     the memo with keys of its own;
//   - one entry per peer ID, replaced when the peer's key changes, zeroed by
//     Forget (the peer was removed) and by Zero (the interface closed); a
//     handshake that looked its peer up before such an erasure remembers
//     nothing (ssMemo.erasures), so a removed peer's secret does not come
//     back from a handshake that was under way when the reload removed it.
//
// A remembered value is X25519(our static, pub) whatever role pub plays in
// the message, so using it for any DH with that pub is always correct.

// ssEntry is one peer's remembered static-static secret.
type ssEntry struct {
	pub PublicKey
	ss  [32]byte
}

// ssMemo is the responder's memo. Safe for concurrent use.
type ssMemo struct {
	mu    sync.Mutex
	byID  map[string]*ssEntry    // guarded by mu
	byPub map[PublicKey]*ssEntry // guarded by mu; the same entries, by key
	// erasures counts forget and zero calls (guarded by mu). A handshake
	// reads it before it looks its peer up, and remember stores nothing
	// once it has moved: the peer may have been forgotten (removed by a
	// reload) after the lookup answered, and its secret must not come back
	// after the Forget that erased it, to stay until the interface closes.
	// Any erasure counts, not only the peer's: a handshake that races one
	// only computes ss again next time.
	erasures uint64
}

// epoch is the erasure count a handshake passes to remember.
func (m *ssMemo) epoch() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.erasures
}

func newSSMemo() *ssMemo {
	return &ssMemo{byID: make(map[string]*ssEntry), byPub: make(map[PublicKey]*ssEntry)}
}

// lookup copies the remembered X25519(our static, pub) into out.
func (m *ssMemo) lookup(pub PublicKey, out *[32]byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.byPub[pub]
	if e == nil {
		return false
	}
	*out = e.ss
	return true
}

// remember stores ss for the authenticated peer id with key pub, unless
// something was erased since epoch (read before the handshake's lookup).
func (m *ssMemo) remember(id string, pub PublicKey, ss *[32]byte, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.erasures != epoch {
		return
	}
	if old := m.byID[id]; old != nil {
		if old.pub == pub {
			return
		}
		m.dropLocked(id, old)
	}
	if other := m.byPub[pub]; other != nil {
		// Two IDs with one key: keep the one entry, under the newest ID.
		for oid, e := range m.byID {
			if e == other {
				delete(m.byID, oid)
			}
		}
		other.ss = *ss
		m.byID[id] = other
		return
	}
	e := &ssEntry{pub: pub, ss: *ss}
	m.byID[id] = e
	m.byPub[pub] = e
}

// forget zeroes and drops the entry of a peer ID.
func (m *ssMemo) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.erasures++
	if e := m.byID[id]; e != nil {
		m.dropLocked(id, e)
	}
}

func (m *ssMemo) dropLocked(id string, e *ssEntry) {
	delete(m.byID, id)
	delete(m.byPub, e.pub)
	clear(e.ss[:])
}

// zero zeroes and drops every entry.
func (m *ssMemo) zero() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.erasures++
	for id, e := range m.byID {
		m.dropLocked(id, e)
	}
}

// len is the number of entries (tests).
func (m *ssMemo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID)
}

// dhRecord keeps the static-key DH results of one handshake, so the one
// with the peer's static key can be remembered once the peer is
// authenticated. Owned by that handshake's goroutine; zeroed by its owner.
type dhRecord struct {
	n   int
	pub [2]PublicKey
	ss  [2][32]byte
}

func (r *dhRecord) add(pub PublicKey, ss *[32]byte) {
	if r.n < len(r.pub) {
		r.pub[r.n], r.ss[r.n] = pub, *ss
		r.n++
	}
}

// find returns the recorded DH with pub, or nil.
func (r *dhRecord) find(pub PublicKey) *[32]byte {
	for i := 0; i < r.n; i++ {
		if r.pub[i] == pub {
			return &r.ss[i]
		}
	}
	return nil
}

func (r *dhRecord) zero() { clear(r.ss[:]); r.n = 0 }
