package session

import (
	"crypto/rand"
	"encoding/binary"
	"sync"

	"stunnel/handshake"
	"stunnel/rekey"
)

// MapRegistry is a Registry in a map, for holders with one peer or few
// (securesession, tests); the daemon's index table serves every peer of an
// interface instead. Safe for concurrent use.
type MapRegistry struct {
	mu sync.RWMutex
	m  map[uint32]*rekey.Keypair // guarded by mu; nil value: reserved, no key yet
}

// NewMapRegistry returns an empty MapRegistry.
func NewMapRegistry() *MapRegistry { return &MapRegistry{m: make(map[uint32]*rekey.Keypair)} }

// Reserve returns a fresh random non-zero index.
func (r *MapRegistry) Reserve() uint32 {
	var b [4]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("session: crypto/rand failed: " + err.Error()) // never on Linux
		}
		idx := binary.LittleEndian.Uint32(b[:])
		if _, taken := r.m[idx]; !taken && idx != 0 {
			r.m[idx] = nil
			return idx
		}
	}
}

// Claim binds a given index if it is free and not zero.
func (r *MapRegistry) Claim(idx uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.m[idx]; taken || idx == 0 {
		return false
	}
	r.m[idx] = nil
	return true
}

// Register makes idx open with kp.
func (r *MapRegistry) Register(idx uint32, kp *rekey.Keypair, _ handshake.Cipher) {
	r.mu.Lock()
	r.m[idx] = kp
	r.mu.Unlock()
}

// Release forgets idx.
func (r *MapRegistry) Release(idx uint32) {
	r.mu.Lock()
	delete(r.m, idx)
	r.mu.Unlock()
}

// Lookup returns what idx opens with (nil: a handshake in progress) and
// whether it is known.
func (r *MapRegistry) Lookup(idx uint32) (kp *rekey.Keypair, ok bool) {
	r.mu.RLock()
	kp, ok = r.m[idx]
	r.mu.RUnlock()
	return kp, ok
}

// Len is the number of indices in use.
func (r *MapRegistry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}
