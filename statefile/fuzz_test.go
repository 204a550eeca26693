package statefile

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary file contents to Open: it must never panic, and
// anything it accepts must be what Seal wrote under the same key.
func FuzzOpen(f *testing.F) {
	key := &memKey{priv: [32]byte{1: 7, 31: 64}}
	good, _ := Seal(key, Payload{Data: []byte("seed payload"), CleanStop: true}, time.Unix(1, 0))
	f.Add(good)
	f.Add(good[:headerSize])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Open(key, b)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Open error %v does not wrap ErrRefused", err)
			}
			return
		}
		// Every seed Seal wrote carries this payload (nonces differ between
		// fuzz workers, so the bytes themselves cannot be compared).
		if !bytes.Equal(p.Data, []byte("seed payload")) || !p.CleanStop || p.Written.Unix() != 1 {
			t.Fatalf("Open accepted bytes that Seal did not write: %+v", p)
		}
	})
}
