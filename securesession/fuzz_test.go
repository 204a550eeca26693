package securesession

import (
	"bytes"
	"encoding/binary"
	"testing"

	"stunnel/handshake"
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
	sealed := mustWrap(f, p.alice, "seed")
	f.Add(sealed)
	f.Add([]byte{4, 1, 0, 0, 1, 2, 3, 4})
	// A forgery: what a data message's plaintext looks like, with a zero
	// tag, under another process's index (rewritten below).
	f.Add(append([]byte{4, 1, 0, 0, 9, 9, 9, 9, 7, 0, 0, 0, 0, 0, 0, 0, payloadTagMessage, 'f', 'o', 'r', 'g', 'e', 'd'}, make([]byte, tagLen)...))
	bobIndex := binary.LittleEndian.Uint32(sealed[4:8])
	fresh := newPair(f, rekey.DefaultPolicy())
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Each fuzzing worker makes its own pair, with its own random
		// receiver indices, while the corpus comes from other processes:
		// aim data messages at this process's session, or every mutation
		// stops at the index lookup and never reaches the AEAD or the
		// replay window.
		if len(msg) >= 8 && msg[0] == handshake.MessageTypeData {
			msg = bytes.Clone(msg)
			binary.LittleEndian.PutUint32(msg[4:8], bobIndex)
		}
		// Only alice's sealed message is genuine: any other input that
		// gives data is a forgery that got through. (A bound on the
		// length alone cannot fail: so short a message never opens.)
		if res, err := p.bob.Unwrap(msg); err == nil && res.Data != nil && !bytes.Equal(msg, sealed) {
			t.Fatalf("a message alice never sealed gave data %q", res.Data)
		}
		if res, err := fresh.bob.Unwrap(msg); err == nil && res.Data != nil {
			t.Fatalf("a session with no keys gave data %q", res.Data)
		}
	})
}
