package replay

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestStateRoundTripBehavesLikeTheOriginal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, w := range []uint64{MinWindow, DefaultWindow} {
		f, _ := New(w, 1<<40)
		var accepted []uint64
		for range 5000 {
			c := rng.Uint64N(20000)
			if f.Accept(c) {
				accepted = append(accepted, c)
			}
		}
		b, err := f.State().AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		s, n, err := ParseState(b)
		if err != nil || n != len(b) {
			t.Fatalf("ParseState = %d of %d, %v", n, len(b), err)
		}
		g, err := FromState(s, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range accepted {
			if g.Accept(c) {
				t.Fatalf("window %d: counter %d accepted before the save is accepted after it", w, c)
			}
		}
		// From here on both filters decide every counter alike.
		for range 5000 {
			c := rng.Uint64N(40000)
			if a, b := f.Accept(c), g.Accept(c); a != b {
				t.Fatalf("window %d: counter %d: original %v, restored %v", w, c, a, b)
			}
		}
	}
}

func TestFreezeRefusesEverything(t *testing.T) {
	f, _ := New(MinWindow, 1000)
	f.Freeze()
	for _, c := range []uint64{0, 1, 999, 1 << 62} {
		if f.Accept(c) {
			t.Fatalf("frozen filter accepted %d", c)
		}
	}
}

func TestParseStateRefusesDamage(t *testing.T) {
	f, _ := New(MinWindow, 1000)
	b, _ := f.State().AppendBinary(nil)
	for n := range b {
		if _, _, err := ParseState(b[:n]); !errors.Is(err, ErrBadState) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	for _, mut := range []func([]byte){
		func(b []byte) { b[0] = 2 },          // version
		func(b []byte) { b[1] = 100 },        // window not a power of two
		func(b []byte) { b[8] = 0x80 },       // window huge
		func(b []byte) { b[1], b[2] = 0, 0 }, // window 0
	} {
		c := bytes.Clone(b)
		mut(c)
		if _, _, err := ParseState(c); !errors.Is(err, ErrBadState) {
			t.Fatalf("damaged state accepted: %v", err)
		}
	}
	if _, err := FromState(State{Window: MinWindow, Ring: make([]uint64, 3)}, 10); !errors.Is(err, ErrBadState) {
		t.Fatalf("FromState with a short ring: %v", err)
	}
	if _, err := FromState(f.State(), 0); err == nil {
		t.Fatal("FromState with limit 0 succeeded")
	}
}

func FuzzParseState(f *testing.F) {
	g, _ := New(MinWindow, 1000)
	g.Accept(5)
	g.Accept(300)
	b, _ := g.State().AppendBinary(nil)
	f.Add(b)
	f.Add(b[:17])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, n, err := ParseState(b)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		again, err := s.AppendBinary(nil)
		if err != nil || !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		h, err := FromState(s, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		h.Accept(s.Last + 1) // must not panic
		h.Accept(s.Last - 1)
	})
}
