package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// State is a Filter's contents, for saving across a restart: a filter
// rebuilt from it refuses every counter the original had accepted (or found
// too old) and accepts exactly what the original would have.
type State struct {
	Window uint64   // W, as configured when the filter was made
	Last   uint64   // H, the highest counter accepted
	Ring   []uint64 // the bitmap, 2*W/64 words, verbatim
}

// stateVersion is the first byte of the encoding; a decoder refuses others.
const stateVersion = 1

// ErrBadState is wrapped by every decoding and validation error.
var ErrBadState = errors.New("replay filter state invalid")

// State copies f's contents. Like Accept, the caller serialises it with
// every other call on f.
func (f *Filter) State() State {
	return State{Window: f.window, Last: f.last, Ring: append([]uint64(nil), f.ring...)}
}

// Freeze makes f refuse every counter from now on. A keypair freezes its
// filter when its state is exported for good, so a packet accepted after the
// export (and so missing from the saved state) cannot exist.
func (f *Filter) Freeze() { f.limit = 0 }

// FromState rebuilds a filter from s, refusing counters >= limit (the
// reject-after-messages bound, which the caller takes from its policy).
func FromState(s State, limit uint64) (*Filter, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if limit == 0 {
		return nil, fmt.Errorf("replay limit must be greater than 0")
	}
	f, err := New(s.Window, limit)
	if err != nil {
		return nil, err
	}
	copy(f.ring, s.Ring)
	f.last = s.Last
	return f, nil
}

func (s State) validate() error {
	if s.Window < MinWindow || s.Window > MaxWindow || s.Window&(s.Window-1) != 0 {
		return fmt.Errorf("%w: window %d", ErrBadState, s.Window)
	}
	if want := 2 * s.Window / wordBits; uint64(len(s.Ring)) != want {
		return fmt.Errorf("%w: %d ring words for window %d, want %d", ErrBadState, len(s.Ring), s.Window, want)
	}
	return nil
}

// AppendBinary appends the encoding of s: version byte, window, last (uint64
// little-endian), then the ring words. The length follows from the window
// (BinarySize).
func (s State) AppendBinary(b []byte) ([]byte, error) {
	if err := s.validate(); err != nil {
		return b, err
	}
	b = append(b, stateVersion)
	b = binary.LittleEndian.AppendUint64(b, s.Window)
	b = binary.LittleEndian.AppendUint64(b, s.Last)
	for _, w := range s.Ring {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b, nil
}

// BinarySize is how many bytes AppendBinary appends for s, so a caller that
// puts the encoding next to secrets can reserve the room first (a saved
// keypair: rekey.KeypairState.AppendBinary).
func (s State) BinarySize() int { return stateHead + 8*len(s.Ring) }

// stateHead is the encoding's fixed part: version, window, last.
const stateHead = 1 + 8 + 8

// ParseState decodes one State from the front of b and returns the number of
// bytes it used. b is untrusted: every length is checked before it is used.
func ParseState(b []byte) (State, int, error) {
	if len(b) < stateHead {
		return State{}, 0, fmt.Errorf("%w: truncated header", ErrBadState)
	}
	if b[0] != stateVersion {
		return State{}, 0, fmt.Errorf("%w: encoding version %d, want %d", ErrBadState, b[0], stateVersion)
	}
	s := State{
		Window: binary.LittleEndian.Uint64(b[1:]),
		Last:   binary.LittleEndian.Uint64(b[9:]),
	}
	if s.Window < MinWindow || s.Window > MaxWindow || s.Window&(s.Window-1) != 0 {
		return State{}, 0, fmt.Errorf("%w: window %d", ErrBadState, s.Window)
	}
	words := int(2 * s.Window / wordBits) // at most 32768: no overflow
	if len(b)-stateHead < words*8 {
		return State{}, 0, fmt.Errorf("%w: truncated ring", ErrBadState)
	}
	s.Ring = make([]uint64, words)
	for i := range s.Ring {
		s.Ring[i] = binary.LittleEndian.Uint64(b[stateHead+8*i:])
	}
	return s, stateHead + words*8, nil
}
