package rekey

// Keypairs across a restart.
//
// The invariants a restored keypair must keep are the data plane's own:
// no (key, counter) pair is ever sealed twice, and no packet accepted once is
// accepted again. Both hold for a state written at a clean stop, and only for
// one:
//
//   - Retire exports the state and, in the same step, stops the keypair from
//     sealing or opening: the send counter is swapped to its limit (a racing
//     NextNonce either got its counter before the swap, and the saved counter
//     is above it, or gets nothing) and the replay filter is frozen under the
//     keypair's lock after it is copied (a racing CheckCounter either marked
//     its counter before the copy, and the copy has it, or is refused). So the
//     saved counter and window are exact whatever the data plane was doing.
//   - A state saved while running (on request) would have counters that the
//     running process goes on using; restoring it would reseal them. There is
//     deliberately no exporter for that case: such a file (statefile.Payload
//     with CleanStop false) may carry tickets only, never keypairs, and the
//     reader restores its tickets only whatever it carries
//     (session.Peer.RestoreTickets).
//   - The state file is consumed before its keypairs seal anything
//     (statefile.Take unlinks and fsyncs first), so one retired state is
//     restored at most once. A crash (kill -9, power loss) writes no state:
//     the next start falls back to resumption or a full handshake, and the
//     keys the crashed process used are never loaded again.
//
// ImportKeypair refuses a state whose key is past RejectAfterTime, or whose
// creation lies in the future (the wall clock went back across the restart:
// the key's age is unknown). The restored keypair's age counts from the saved
// wall-clock creation time, and it keeps the rekey_after and reject_after it
// was made under (saved with it), or the configured ones where those are
// shorter: a restart, even with a longer reject_after configured, does not
// extend a key's life (a reload does not either: docs/CONFIGURATION.md).

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"stunnel/internal/secretbuf"
	"stunnel/replay"
)

// KeypairState is what a Keypair needs to continue after a restart. It holds
// raw keys: Zero it as soon as it is encoded or imported, never log it.
type KeypairState struct {
	SendKey, RecvKey [32]byte // secret
	LocalIndex       uint32
	RemoteIndex      uint32
	SessionID        [32]byte
	Created          time.Time // wall clock; the monotonic reading does not survive a restart
	Initiator        bool
	SendCounter      uint64 // the next counter to seal with
	Replay           replay.State
	// The lifetimes the keypair was made under; zero: unknown (a version 1
	// encoding, from before they were saved), the importing policy's apply.
	RekeyAfter, RejectAfter time.Duration
}

// Errors from Retire and ImportKeypair.
var (
	ErrStateExpired = errors.New("saved keypair is past reject-after-time")
	ErrStateClock   = errors.New("saved keypair was created in the future: the clock went back across the restart")
	ErrStateKeys    = errors.New("keypair has no raw keys to save (made without them or already zeroed)")
	ErrStateFormat  = errors.New("saved keypair encoding invalid")
)

// Retire exports k's exact state for a clean stop and makes k unusable, as
// Zero does: after it, k never seals or opens again, so the returned state is
// the only live copy of the session. It fails if k was zeroed or made without
// raw keys.
func (k *Keypair) Retire() (*KeypairState, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.zeroed.Load() || k.sendKey == nil || k.recvKey == nil {
		return nil, ErrStateKeys
	}
	// Order matters: zeroed first stops new NextNonce calls; the swap then
	// settles the ones already past that check (their CAS fails on the limit).
	k.zeroed.Store(true)
	next := k.sendCounter.Swap(k.rejectAfterMsgs)
	s := &KeypairState{
		SendKey:     *k.sendKey,
		RecvKey:     *k.recvKey,
		LocalIndex:  k.LocalIndex,
		RemoteIndex: k.RemoteIndex,
		SessionID:   k.SessionID,
		Created:     k.Created,
		Initiator:   k.Initiator,
		SendCounter: next,
		Replay:      k.filter.State(),
		RekeyAfter:  k.rekeyAt.Sub(k.Created),
		RejectAfter: k.rejectAfterTime,
	}
	// CheckCounter calls that passed the zeroed check before the Store wait
	// on mu and then meet a frozen filter: nothing is accepted after the copy.
	k.filter.Freeze()
	clear(k.sendKey[:])
	clear(k.recvKey[:])
	return s, nil
}

// ImportKeypair rebuilds a keypair from s under policy p at time now. aead
// builds the AEAD for a raw key (the caller knows the session's cipher;
// handshake.NewAEAD fits).
// The keypair owns copies of the raw keys and zeroes them in Zero; s is left
// for the caller to Zero. It continues sealing at s.SendCounter and its
// replay filter refuses everything the exported one had accepted.
func ImportKeypair(s *KeypairState, p Policy, now time.Time, aead func(key *[32]byte) (cipher.AEAD, error)) (*Keypair, error) {
	if s.RekeyAfter > 0 {
		p.RekeyAfterTime = min(p.RekeyAfterTime, s.RekeyAfter)
	}
	if s.RejectAfter > 0 {
		p.RejectAfterTime = min(p.RejectAfterTime, s.RejectAfter)
	}
	if !now.Before(s.Created.Add(p.RejectAfterTime)) {
		return nil, ErrStateExpired
	}
	if s.Created.After(now) {
		return nil, ErrStateClock
	}
	limit := max(p.RejectAfterMessages, 1)
	f, err := replay.FromState(s.Replay, limit)
	if err != nil {
		return nil, fmt.Errorf("restoring keypair: %w", err)
	}
	sendKey, recvKey := new([32]byte), new([32]byte)
	*sendKey, *recvKey = s.SendKey, s.RecvKey
	send, err := aead(sendKey)
	if err == nil {
		var recv cipher.AEAD
		if recv, err = aead(recvKey); err == nil {
			// s.Created has no monotonic reading (none survives a restart), so
			// deadlines made from it would be compared on the wall clock: a
			// clock stepped back after the restore would keep the key sealing
			// past reject-after-time. Anchor it to now's monotonic reading at
			// the same age, as a fresh keypair's creation time is.
			created := now.Add(-now.Sub(s.Created))
			k := NewKeypair(send, recv, sendKey, recvKey, s.LocalIndex, s.RemoteIndex,
				s.SessionID, created, s.Initiator, p)
			k.filter = f
			k.sendCounter.Store(min(s.SendCounter, limit))
			return k, nil
		}
	}
	clear(sendKey[:])
	clear(recvKey[:])
	return nil, fmt.Errorf("restoring keypair: building its cipher: %w", err)
}

func (s *KeypairState) text() string {
	return fmt.Sprintf("(saved keypair %#08x/%#08x at counter %d: keys not shown)", s.LocalIndex, s.RemoteIndex, s.SendCounter)
}

// Format prints the indices and the counter, never the keys: fmt would
// print SendKey and RecvKey byte by byte.
func (s KeypairState) Format(f fmt.State, _ rune) { io.WriteString(f, s.text()) }

// MarshalText keeps encoders from writing the keys.
func (s KeypairState) MarshalText() ([]byte, error) { return []byte(s.text()), nil }

// Zero overwrites the raw keys in s.
func (s *KeypairState) Zero() {
	clear(s.SendKey[:])
	clear(s.RecvKey[:])
}

// keypairStateVersion is the first byte of the encoding; version 1, without
// the lifetimes, is still read (and written for a state that has none).
const (
	keypairStateVersion   = 2
	keypairStateVersionV1 = 1
)

// fixed part: version, flags, 2 indices, session ID, created, counter, 2
// keys; version 2 adds the two lifetimes.
const (
	keypairStateFixed   = keypairStateFixedV1 + 8 + 8
	keypairStateFixedV1 = 1 + 1 + 4 + 4 + 32 + 8 + 8 + 32 + 32
)

// AppendBinary appends the versioned encoding of s (little-endian):
//
//	version(1)=2 flags(1: bit0 initiator) local(4) remote(4) sessionID(32)
//	created(8, Unix ns) sendCounter(8) sendKey(32) recvKey(32)
//	rekeyAfter(8, ns) rejectAfter(8, ns) replay state
//
// Version 1 is the same without the two lifetimes (written when s lacks
// one). The output holds secret keys: seal it (statefile) and clear it
// after use. The room is reserved first (secretbuf.Grow): when b is too
// small its array is cleared and left, and no array but the returned one
// ever holds the keys, so use only the result.
func (s *KeypairState) AppendBinary(b []byte) ([]byte, error) {
	version := byte(keypairStateVersion)
	fixed := keypairStateFixed
	if s.RekeyAfter <= 0 || s.RejectAfter <= 0 {
		version, fixed = keypairStateVersionV1, keypairStateFixedV1
	}
	b = secretbuf.Grow(b, fixed+s.Replay.BinarySize())
	b = append(b, version, 0)
	if s.Initiator {
		b[len(b)-1] = 1
	}
	b = binary.LittleEndian.AppendUint32(b, s.LocalIndex)
	b = binary.LittleEndian.AppendUint32(b, s.RemoteIndex)
	b = append(b, s.SessionID[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Created.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, s.SendCounter)
	b = append(b, s.SendKey[:]...)
	b = append(b, s.RecvKey[:]...)
	if version == keypairStateVersion {
		b = binary.LittleEndian.AppendUint64(b, uint64(s.RekeyAfter))
		b = binary.LittleEndian.AppendUint64(b, uint64(s.RejectAfter))
	}
	return s.Replay.AppendBinary(b)
}

// ParseKeypairState decodes one KeypairState from the front of b and returns
// the bytes it used. b is untrusted (even inside an authenticated file, a
// bug must not become a panic): every field is bounds-checked.
func ParseKeypairState(b []byte) (*KeypairState, int, error) {
	fixed := keypairStateFixed
	switch {
	case len(b) == 0:
		return nil, 0, fmt.Errorf("%w: truncated", ErrStateFormat)
	case b[0] == keypairStateVersionV1:
		fixed = keypairStateFixedV1
	case b[0] != keypairStateVersion:
		return nil, 0, fmt.Errorf("%w: version %d, want %d", ErrStateFormat, b[0], keypairStateVersion)
	}
	if len(b) < fixed {
		return nil, 0, fmt.Errorf("%w: truncated", ErrStateFormat)
	}
	if b[1]&^1 != 0 {
		return nil, 0, fmt.Errorf("%w: unknown flags %#x", ErrStateFormat, b[1])
	}
	s := &KeypairState{Initiator: b[1] == 1}
	s.LocalIndex = binary.LittleEndian.Uint32(b[2:])
	s.RemoteIndex = binary.LittleEndian.Uint32(b[6:])
	copy(s.SessionID[:], b[10:42])
	s.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[42:])))
	s.SendCounter = binary.LittleEndian.Uint64(b[50:])
	copy(s.SendKey[:], b[58:90])
	copy(s.RecvKey[:], b[90:122])
	if fixed == keypairStateFixed {
		s.RekeyAfter = time.Duration(binary.LittleEndian.Uint64(b[122:]))
		s.RejectAfter = time.Duration(binary.LittleEndian.Uint64(b[130:]))
		if s.RekeyAfter <= 0 || s.RejectAfter <= 0 {
			s.Zero()
			return nil, 0, fmt.Errorf("%w: lifetimes %v and %v must be positive", ErrStateFormat, s.RekeyAfter, s.RejectAfter)
		}
	}
	rs, n, err := replay.ParseState(b[fixed:])
	if err != nil {
		s.Zero()
		return nil, 0, fmt.Errorf("%w: %w", ErrStateFormat, err)
	}
	s.Replay = rs
	return s, fixed + n, nil
}
