package secretbuf

import (
	"bytes"
	"testing"
)

// Growing a full buffer keeps its bytes in the new array and leaves none in
// the old one: append would leave them there for the garbage collector.
func TestGrowClearsTheArrayItLeaves(t *testing.T) {
	old := make([]byte, 4, 6)
	copy(old[:6], "secret")
	got := Grow(old, 3)
	if !bytes.Equal(got, []byte("secr")) || cap(got)-len(got) < 3 {
		t.Fatalf("Grow = %q, room %d; want \"secr\" with room for 3", got, cap(got)-len(got))
	}
	if !bytes.Equal(old[:6], make([]byte, 6)) {
		t.Fatalf("the array Grow left still holds %q", old[:6])
	}
}

// A buffer with room enough stays where it is, untouched: its bytes are
// still the caller's.
func TestGrowKeepsBufferWithRoom(t *testing.T) {
	b := make([]byte, 2, 8)
	copy(b, "ab")
	got := Grow(b, 6)
	if &got[0] != &b[0] || string(b) != "ab" {
		t.Fatalf("Grow moved or changed a buffer that had room: %q", b)
	}
	if got := Grow(nil, 5); len(got) != 0 || cap(got) != 5 {
		t.Fatalf("Grow(nil, 5): len %d cap %d, want 0 and 5", len(got), cap(got))
	}
}
