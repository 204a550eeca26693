package securesession

import (
	"testing"

	"stunnel/rekey"
)

// FuzzUnwrap feeds arbitrary bytes to an established session, and to a
// fresh responder: nothing may panic, and garbage never yields data.
func FuzzUnwrap(f *testing.F) {
	p := newPair(f, rekey.DefaultPolicy())
	first, err := p.alice.Connect("bob")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(first)
	deliver(f, p.bob, p.alice, [][]byte{first})
	f.Add(mustWrap(f, p.alice, "seed"))
	f.Add([]byte{4, 1, 0, 0, 1, 2, 3, 4})
	fresh := newPair(f, rekey.DefaultPolicy())
	f.Fuzz(func(t *testing.T, msg []byte) {
		if res, err := p.bob.Unwrap(msg); err == nil && res.Data != nil && len(msg) < 32 {
			t.Fatalf("a %d-byte message gave data", len(msg))
		}
		_, _ = fresh.bob.Unwrap(msg)
	})
}
