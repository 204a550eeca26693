package statefile

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// Sessions is a ready encoding for the payload of a state file: per peer,
// its keypairs, cipher, endpoint, ticket and whatever else the session core
// wants to keep (Extra, opaque here). Encode it, Save it with CleanStop set
// only after the data plane stopped and every keypair was Retired; after
// Take, Decode it and Restore each peer.
type Sessions struct {
	Peers []PeerSessions
}

// Keypair slots of a peer, as the session core holds them.
const (
	SlotPrevious = iota
	SlotCurrent
	SlotNext
	numSlots
)

// PeerSessions is one peer's saved state. It holds raw keys: Zero it once
// encoded or restored.
type PeerSessions struct {
	Peer     handshake.PublicKey
	Cipher   handshake.Cipher
	Endpoint netip.AddrPort                // invalid: none known
	Keypairs [numSlots]*rekey.KeypairState // by Slot*; nil: empty slot
	Ticket   []byte                        // the session ticket held, opaque; at most MaxTicket bytes
	Extra    []byte                        // timer state etc., opaque; at most MaxExtra bytes
}

// Encoding limits (a decoder refuses more).
const (
	MaxTicket = 4096
	MaxExtra  = 1 << 16

	sessionsVersion = 1
)

// ErrSessionsFormat is wrapped by every Decode error.
var ErrSessionsFormat = errors.New("saved sessions encoding invalid")

// Encode returns the versioned encoding of s (it holds keys: clear it after
// sealing).
//
//	version(1)=1 count(4)
//	per peer: key(32) cipher(1) endpoint: family(1: 0,4,6) addr(0/4/16) port(2 if any)
//	          slots(1: bit i = slot i present) keypairs (rekey encoding) in slot order
//	          ticketLen(2) ticket extraLen(4) extra
func (s *Sessions) Encode() ([]byte, error) {
	b := []byte{sessionsVersion}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Peers)))
	for i := range s.Peers {
		p := &s.Peers[i]
		if len(p.Ticket) > MaxTicket || len(p.Extra) > MaxExtra {
			clear(b)
			return nil, fmt.Errorf("saved sessions: peer %s: ticket or extra state too large", p.Peer)
		}
		b = append(b, p.Peer[:]...)
		b = append(b, byte(p.Cipher))
		switch {
		case !p.Endpoint.IsValid():
			b = append(b, 0)
		case p.Endpoint.Addr().Unmap().Is4():
			a := p.Endpoint.Addr().Unmap().As4()
			b = append(append(b, 4), a[:]...)
			b = binary.LittleEndian.AppendUint16(b, p.Endpoint.Port())
		default:
			a := p.Endpoint.Addr().As16()
			b = append(append(b, 6), a[:]...)
			b = binary.LittleEndian.AppendUint16(b, p.Endpoint.Port())
		}
		var mask byte
		for slot, k := range p.Keypairs {
			if k != nil {
				mask |= 1 << slot
			}
		}
		b = append(b, mask)
		for _, k := range p.Keypairs {
			if k == nil {
				continue
			}
			var err error
			if b, err = k.AppendBinary(b); err != nil {
				clear(b)
				return nil, fmt.Errorf("saved sessions: peer %s: %w", p.Peer, err)
			}
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(len(p.Ticket)))
		b = append(b, p.Ticket...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Extra)))
		b = append(b, p.Extra...)
	}
	return b, nil
}

// DecodeSessions parses an Encode output. b is from an authenticated file,
// but is bounds-checked as if it were not.
func DecodeSessions(b []byte) (*Sessions, error) {
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != sessionsVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrSessionsFormat, v, sessionsVersion)
	}
	n := r.u32()
	// Each peer takes at least 41 bytes: refuse a count the input cannot hold
	// before allocating for it.
	if r.err != nil || uint64(n)*41 > uint64(len(r.b)) {
		return nil, fmt.Errorf("%w: truncated (peer count %d)", ErrSessionsFormat, n)
	}
	s := &Sessions{Peers: make([]PeerSessions, 0, n)}
	for range n {
		var p PeerSessions
		copy(p.Peer[:], r.bytes(32))
		p.Cipher = handshake.Cipher(r.byte())
		switch fam := r.byte(); fam {
		case 0:
		case 4:
			a := netip.AddrFrom4([4]byte(r.fixed(4)))
			p.Endpoint = netip.AddrPortFrom(a, r.u16())
		case 6:
			a := netip.AddrFrom16([16]byte(r.fixed(16)))
			p.Endpoint = netip.AddrPortFrom(a, r.u16())
		default:
			r.fail(fmt.Sprintf("endpoint family %d", fam))
		}
		mask := r.byte()
		if mask>>numSlots != 0 {
			r.fail(fmt.Sprintf("keypair slots %#x", mask))
		}
		for slot := range numSlots {
			if r.err != nil || mask&(1<<slot) == 0 {
				continue
			}
			k, used, err := rekey.ParseKeypairState(r.b)
			if err != nil {
				r.err = err
				break
			}
			r.b = r.b[used:]
			p.Keypairs[slot] = k
		}
		if tl := r.u16(); tl > MaxTicket {
			r.fail(fmt.Sprintf("ticket of %d bytes", tl))
		} else {
			p.Ticket = r.bytes(int(tl))
		}
		if el := r.u32(); el > MaxExtra {
			r.fail(fmt.Sprintf("extra state of %d bytes", el))
		} else {
			p.Extra = r.bytes(int(el))
		}
		if r.err != nil {
			p.Zero()
			s.Zero()
			return nil, fmt.Errorf("%w: peer %d: %w", ErrSessionsFormat, len(s.Peers), r.err)
		}
		s.Peers = append(s.Peers, p)
	}
	if len(r.b) != 0 {
		s.Zero()
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrSessionsFormat, len(r.b))
	}
	return s, nil
}

// Restore rebuilds p's keypairs under policy at now, with p.Cipher. A slot
// comes back nil when it was empty or its keypair cannot continue (past
// reject-after-time, created in the future, bad cipher); dropped says why
// for each dropped one. It zeroes the saved keys in p.
func (p *PeerSessions) Restore(policy rekey.Policy, now time.Time) (kps [numSlots]*rekey.Keypair, dropped []error) {
	aead := func(k *[32]byte) (cipher.AEAD, error) { return handshake.NewAEAD(p.Cipher, k) }
	for slot, s := range p.Keypairs {
		if s == nil {
			continue
		}
		k, err := rekey.ImportKeypair(s, policy, now, aead)
		if err != nil {
			dropped = append(dropped, fmt.Errorf("peer %s keypair %d: %w", p.Peer, slot, err))
			continue
		}
		kps[slot] = k
	}
	p.Zero()
	return kps, dropped
}

// Zero overwrites every saved key of p.
func (p *PeerSessions) Zero() {
	for _, k := range p.Keypairs {
		if k != nil {
			k.Zero()
		}
	}
}

// Zero overwrites every saved key in s.
func (s *Sessions) Zero() {
	for i := range s.Peers {
		s.Peers[i].Zero()
	}
}

// reader consumes b; the first failure sticks and later reads return zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = errors.New(what)
	}
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail("truncated")
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n int) []byte { return append([]byte(nil), r.fixed(n)...) }
func (r *reader) byte() byte         { return r.fixed(1)[0] }
func (r *reader) u16() uint16        { return binary.LittleEndian.Uint16(r.fixed(2)) }
func (r *reader) u32() uint32        { return binary.LittleEndian.Uint32(r.fixed(4)) }
