// Package replay is the sliding-window replay filter for data-packet counters.
//
// The filter is a ring of 64-bit words in the manner of RFC 6479: each bit
// records one counter, and the window slides forward by clearing the words it
// moves past, never by shifting the whole bitmap. Accept costs a few
// nanoseconds and never allocates.
package replay

import "fmt"

const (
	// DefaultWindow is the window size used when the config sets none.
	DefaultWindow = 8192
	// MinWindow is the smallest window New accepts: two ring words.
	MinWindow = 128
	// MaxWindow bounds the ring's memory (256 KiB per filter at this size).
	MaxWindow = 1 << 20

	wordBits = 64
	wordLog  = 6 // log2(wordBits)
)

// Filter decides whether a data packet's counter is fresh.
//
// Window semantics, with H the highest counter accepted so far (0 before any
// packet, so counter 0 is accepted once like any other) and W the configured
// window: a counter c is accepted iff
//
//	c < limit  &&  c has not been accepted before  &&  c + W > H
//
// that is, every counter from H-W+1 up to H, and anything above H, is inside
// the window; H-W and below are too old. Accepting c > H moves H to c.
//
// The ring holds 2*W/64 words (2 KiB for the default window), a power of two
// so a counter's word is found with a mask. W/64+1 words would be the least
// that covers exactly W counters whatever H's position in its word; doubling
// that to a power of two trades 1 KiB per keypair for no division per packet.
// The window is enforced by the comparison above, so it is exactly W.
//
// Ownership and concurrency: a Filter belongs to one keypair's receive
// direction and is NOT safe for concurrent use; the caller serialises calls
// (the tunnel holds the keypair's replay lock around Accept).
type Filter struct {
	ring   []uint64 // len is a power of two; bit c%64 of word (c/64)&mask is counter c
	mask   uint64   // len(ring) - 1
	last   uint64   // highest counter accepted (H); 0 initially
	window uint64   // W, a power of two >= MinWindow
	limit  uint64   // counters >= limit are always refused
}

// New returns a filter with the given window (a power of two from MinWindow
// to MaxWindow) that refuses every counter >= limit (the reject-after-messages
// bound). limit must be non-zero: a filter that refuses everything is a
// misconfiguration.
func New(window, limit uint64) (*Filter, error) {
	if window < MinWindow || window&(window-1) != 0 {
		return nil, fmt.Errorf("replay window %d must be a power of two of at least %d", window, MinWindow)
	}
	if window > MaxWindow {
		return nil, fmt.Errorf("replay window %d is larger than the maximum %d", window, MaxWindow)
	}
	if limit == 0 {
		return nil, fmt.Errorf("replay limit must be greater than 0")
	}
	words := 2 * window / wordBits
	return &Filter{
		ring:   make([]uint64, words),
		mask:   words - 1,
		window: window,
		limit:  limit,
	}, nil
}

// Accept reports whether counter is fresh and, if so, marks it seen and slides
// the window forward to it when it is the new highest.
//
// Call Accept ONLY after the packet carrying counter has passed AEAD
// authentication. Accept both checks and marks, so there is no separate
// "check" step that could tempt a caller to mark before authenticating: a
// forged packet with a huge counter must never move the window, or it would
// make every genuine packet that follows look too old.
func (f *Filter) Accept(counter uint64) bool {
	if counter >= f.limit {
		return false
	}
	block := counter >> wordLog
	if counter > f.last {
		// Clear the words between the old highest word and the new one; a
		// jump of a whole ring or more clears every word exactly once.
		cur := f.last >> wordLog
		diff := block - cur
		if diff > uint64(len(f.ring)) {
			diff = uint64(len(f.ring))
		}
		for i := uint64(1); i <= diff; i++ {
			f.ring[(cur+i)&f.mask] = 0
		}
		f.last = counter
	} else if f.last-counter >= f.window {
		return false
	}
	i := block & f.mask
	bit := uint64(1) << (counter & (wordBits - 1))
	old := f.ring[i]
	f.ring[i] = old | bit
	return old&bit == 0
}

// Reset forgets every counter, as a new filter would.
func (f *Filter) Reset() {
	clear(f.ring)
	f.last = 0
}

// Window returns the configured window size.
func (f *Filter) Window() uint64 { return f.window }
