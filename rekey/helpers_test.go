package rekey

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// t0 is the fake clock's origin; tests advance plain time.Time values by hand.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func randKey(t testing.TB) *[32]byte {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return &k
}

// pair builds the two ends of one session, as a handshake would: the
// initiator's send key is the responder's receive key and the other way round.
func pair(t testing.TB, p Policy, created time.Time, iIndex, rIndex uint32) (initiator, responder *Keypair) {
	t.Helper()
	k1, k2 := randKey(t), randKey(t)
	var sid [32]byte
	copy(sid[:], randKey(t)[:])
	a1, _ := chacha20poly1305.New(k1[:])
	a2, _ := chacha20poly1305.New(k2[:])
	c1, c2 := *k1, *k2
	initiator = NewKeypair(a1, a2, k1, k2, iIndex, rIndex, sid, created, true, p)
	responder = NewKeypair(a2, a1, &c2, &c1, rIndex, iIndex, sid, created, false, p)
	return initiator, responder
}

func nonce(n uint64) []byte {
	var b [chacha20poly1305.NonceSize]byte
	binary.LittleEndian.PutUint64(b[4:], n)
	return b[:]
}
