package session

import (
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"stunnel/handshake"
	"stunnel/internal/secretbuf"
	"stunnel/rekey"
)

// A peer's sessions across a restart (docs/CONFIGURATION.md, "State file";
// the invariants in rekey/keypair_state.go).
//
// Retire takes the exact state of every keypair at a clean stop and makes
// the keypairs unusable in the same step (rekey.Keypair.Retire), so the saved
// counters and replay windows are the last ones used. Restore rebuilds them
// once, before anything is sealed; keypairs past reject_after are dropped.
// The ticket the peer gave us travels too, so a peer whose sessions expired
// meanwhile still resumes. A state saved while running (Snapshot with
// sessions=false) carries the ticket only: its counters would still be in
// use by the running process. It is restored with RestoreTickets, which
// takes no keypair whatever the state holds.
//
// A peer whose public key or pre-shared key changed across the restart gets
// nothing back, as a reload restarts its session (version 2 carries a hash
// of the pre-shared key for that; version 1, from before, is still read,
// without that check, so an upgrade keeps its sessions).

const (
	peerStateVersion   = 2
	peerStateVersionV1 = 1 // no pre-shared key hash
)

// Slots of a saved keypair.
const (
	slotPrevious = iota
	slotCurrent
	slotNext
)

// ErrStateFormat is wrapped by every decoding error of a saved peer;
// ErrOtherIdentity: the state is for another ID or static key.
// ErrOtherPSK (wrapping ErrOtherIdentity): only the pre-shared key differs.
// ErrRestoreTwice: Restore on a Peer that already ran one or has sessions.
var (
	ErrStateFormat   = errors.New("saved peer state invalid")
	ErrRestoreTwice  = errors.New("saved peer state not restored: this peer already restored one or has sessions (a saved state is restored once, into a new peer)")
	ErrOtherIdentity = errors.New("saved peer state is for another peer identity")
	ErrOtherPSK      = fmt.Errorf("%w: the pre-shared key changed", ErrOtherIdentity)
)

// pskTag identifies a pre-shared key in a saved state without holding it:
// SHA-256("stunnel saved peer state psk v2" || psk). One Sum256 of a local
// buffer, cleared after, rather than a hash.Hash, whose buffer on the heap
// would keep the key's last partial block (as handshake.PresharedKey.Tag).
func pskTag(psk *handshake.PresharedKey) [32]byte {
	const label = "stunnel saved peer state psk v2"
	var in [len(label) + handshake.KeySize]byte
	copy(in[:], label)
	copy(in[len(label):], psk[:])
	tag := sha256.Sum256(in[:])
	clear(in[:])
	return tag
}

// SnapshotPeerID reads the peer ID a snapshot was taken for.
func SnapshotPeerID(b []byte) (string, bool) {
	d := decoder{b: b}
	if v := d.byte(); v != peerStateVersion && v != peerStateVersionV1 {
		return "", false
	}
	id := d.string()
	return id, d.err == nil
}

// Snapshot encodes the peer's state and appends it to b. With sessions
// (only at a clean stop, after the data plane stopped sealing) every
// keypair is retired: it never seals or opens again in this process. The
// output holds secrets: seal it and clear it. Room is reserved before each
// part (secretbuf.Grow): when b is too small (it may hold other peers'
// states) its array is cleared and left, so use only the result, and no
// array but the returned one ever holds a secret.
func (p *Peer) Snapshot(b []byte, endpoint string, sessions bool) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	// version, ID, public key, PSK tag, endpoint, 2 counts, 2 times,
	// ticket flag, keypair count
	head := 1 + 2 + len(p.cfg.ID) + 32 + 32 + 2 + len(endpoint) + 4*8 + 1 + 1
	if t := p.held; t != nil {
		head += 2 + len(t.ticket) + len(t.secret) + 2*8
	}
	b = secretbuf.Grow(b, head)
	b = append(b, peerStateVersion)
	b = appendString(b, p.cfg.ID)
	b = append(b, p.cfg.PublicKey[:]...)
	tag := pskTag(&p.cfg.PresharedKey)
	b = append(b, tag[:]...)
	b = appendString(b, endpoint)
	b = binary.LittleEndian.AppendUint64(b, p.handshakes)
	b = binary.LittleEndian.AppendUint64(b, p.resumed)
	b = appendTime(b, p.lastHandshake)
	b = appendTime(b, p.lastFull)
	if t := p.held; t != nil {
		b = append(b, 1)
		b = appendString(b, string(t.ticket))
		b = append(b, t.secret[:]...)
		b = appendTime(b, t.received)
		b = appendTime(b, t.expires)
	} else {
		b = append(b, 0)
	}
	countAt := len(b)
	b = append(b, 0)
	if !sessions {
		return b
	}
	previous, current, next := p.keypairs.Slots()
	for slot, kp := range []*rekey.Keypair{previous, current, next} {
		if kp == nil {
			continue
		}
		st, err := kp.Retire()
		if err != nil { // zeroed or expired already: nothing to carry
			continue
		}
		cipherOf := p.ciphers[kp]
		b = secretbuf.Grow(b, 3+len(p.secret)) // AppendBinary reserves its own
		b = append(b, byte(slot), byte(cipherOf))
		if kp == p.secretFor { // its ticket has not come yet: keep the secret for it
			b = append(b, 1)
			b = append(b, p.secret[:]...)
		} else {
			b = append(b, 0)
		}
		var err2 error
		b, err2 = st.AppendBinary(b)
		st.Zero()
		if err2 != nil {
			continue
		}
		b[countAt]++
	}
	return b
}

// Restored says what Restore brought back.
type Restored struct {
	Sessions int      // keypairs restored
	Dropped  []string // why others were not ("expired", ...)
	Ticket   bool
}

// Restore brings a saved state back into a new Peer, before the holder
// sends anything. It fails if the state is for another identity, and with
// ErrRestoreTwice on a Peer that already ran Restore (whatever its outcome)
// or holds a keypair: importing the same keypairs again, say after the first
// ones were cleared and their indices freed, would seal their counters again.
// (statefile.Take makes a state file restorable once; this makes a Peer take
// at most one state.)
func (p *Peer) Restore(b []byte, now time.Time) (endpoint string, r Restored, err error) {
	return p.restore(b, now, true)
}

// RestoreTickets is Restore for a state saved while running
// (statefile.Payload with CleanStop false): it brings back the ticket and
// the counts, never a keypair, whatever the state carries. Such a state's
// counters went on being used after it was taken, so importing its keypairs
// would seal those counters again. Snapshot writes no keypair then; this
// does not rely on it. Keypairs found are checked, zeroed and listed in
// Dropped as "saved while running". It counts as the Peer's one restore.
func (p *Peer) RestoreTickets(b []byte, now time.Time) (endpoint string, r Restored, err error) {
	return p.restore(b, now, false)
}

func (p *Peer) restore(b []byte, now time.Time, sessions bool) (endpoint string, r Restored, err error) {
	p.mu.Lock()
	tried := p.restoreTried
	p.restoreTried = true
	p.mu.Unlock()
	if previous, current, next := p.keypairs.Slots(); tried || previous != nil || current != nil || next != nil {
		return "", r, ErrRestoreTwice
	}
	d := decoder{b: b}
	version := d.byte()
	if version != peerStateVersion && version != peerStateVersionV1 {
		return "", r, fmt.Errorf("%w: version", ErrStateFormat)
	}
	id := d.string()
	var pub handshake.PublicKey
	copy(pub[:], d.bytes(32))
	var tag []byte
	if version == peerStateVersion {
		tag = d.bytes(32)
	}
	endpoint = d.string()
	handshakes, resumed := d.uint64(), d.uint64()
	lastHS, lastFull := d.time(), d.time()
	var held *heldTicket
	switch flag := d.byte(); flag {
	case 0:
	case 1:
		held = &heldTicket{ticket: []byte(d.string())}
		copy(held.secret[:], d.bytes(32))
		held.received, held.expires = d.time(), d.time()
	default:
		d.fail(fmt.Errorf("ticket flag %d (want 0 or 1)", flag))
	}
	n := int(d.byte())
	if d.err != nil {
		held.zero()
		return "", r, fmt.Errorf("%w: %v", ErrStateFormat, d.err)
	}
	if id != p.cfg.ID || pub != p.cfg.PublicKey {
		held.zero()
		return "", r, ErrOtherIdentity
	}
	if tag != nil {
		psk := p.PresharedKey()
		want := pskTag(&psk)
		psk.Zero()
		if subtle.ConstantTimeCompare(tag, want[:]) != 1 {
			held.zero()
			return "", r, ErrOtherPSK
		}
	}
	policy := p.host.Policy()
	var slots [3]*rekey.Keypair
	var ciphers [3]handshake.Cipher
	var secretSlot = -1
	var secret [32]byte
	var seen [3]bool // a slot's entry, restored or dropped
	// Snapshot writes none of the values refused here: any of them means
	// the state is damaged, and a damaged state is refused whole, never
	// taken in part (the keypairs after a bad entry would be lost unseen).
	for i := range n {
		slot, c, hasSecret := int(d.byte()), handshake.Cipher(d.byte()), d.byte()
		if hasSecret == 1 {
			copy(secret[:], d.bytes(32))
		}
		switch {
		case d.err != nil:
		case slot > slotNext:
			d.fail(fmt.Errorf("keypair %d of %d: slot %d (want 0 to %d)", i+1, n, slot, slotNext))
		case hasSecret > 1:
			d.fail(fmt.Errorf("keypair %d of %d: secret flag %d (want 0 or 1)", i+1, n, hasSecret))
		case seen[slot]:
			// Taking the second would leave the first registered under
			// its index in no slot: live, and never zeroed by Clear.
			d.fail(fmt.Errorf("keypair %d of %d: slot %d saved twice", i+1, n, slot))
		default:
			seen[slot] = true
		}
		if d.err != nil {
			break
		}
		st, used, err := rekey.ParseKeypairState(d.rest())
		if err != nil {
			d.err = err
			break
		}
		d.skip(used)
		if !sessions {
			st.Zero()
			r.Dropped = append(r.Dropped, "saved while running")
			continue
		}
		kp, err := rekey.ImportKeypair(st, policy, now, func(key *[32]byte) (cipher.AEAD, error) {
			return handshake.NewAEAD(c, key)
		})
		st.Zero()
		if err != nil {
			r.Dropped = append(r.Dropped, dropReason(err))
			continue
		}
		if !p.reg.Claim(kp.LocalIndex) {
			kp.Zero()
			r.Dropped = append(r.Dropped, "index in use")
			continue
		}
		p.reg.Register(kp.LocalIndex, kp, c)
		slots[slot], ciphers[slot] = kp, c
		if hasSecret == 1 {
			secretSlot = slot
		}
		r.Sessions++
	}
	if d.err == nil && len(d.rest()) != 0 {
		d.fail(fmt.Errorf("%d bytes after the last of %d keypairs", len(d.rest()), n))
	}
	if d.err != nil {
		for _, kp := range slots {
			if kp != nil {
				kp.Zero()
				p.reg.Release(kp.LocalIndex)
			}
		}
		clear(secret[:])
		held.zero()
		return "", Restored{}, fmt.Errorf("%w: %v", ErrStateFormat, d.err)
	}
	p.keypairs.Restore(slots[slotPrevious], slots[slotCurrent], slots[slotNext])
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, kp := range slots {
		if kp != nil {
			p.noteCipherLocked(kp, ciphers[i])
		}
	}
	// Times from the file are wall clock only; a time without a monotonic
	// reading is compared with now on the wall clock, while a holder
	// sleeps until a deadline (the held ticket's expiry) on the monotonic
	// one: after a step of the wall clock the two disagree, and a holder
	// woken at the deadline would find nothing due, again and again.
	// Anchored to now's monotonic reading at the same distance, as
	// restored keypairs are (rekey.ImportKeypair).
	anchor := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return now.Add(t.Sub(now))
	}
	p.handshakes, p.resumed, p.lastHandshake, p.lastFull = handshakes, resumed, anchor(lastHS), anchor(lastFull)
	if held != nil {
		held.received, held.expires = anchor(held.received), anchor(held.expires)
	}
	if held != nil && now.Before(held.expires) {
		p.held.zero()
		p.held, r.Ticket = held, true
	} else {
		held.zero()
	}
	if secretSlot >= 0 {
		p.secret, p.secretFor = secret, slots[secretSlot]
	}
	clear(secret[:])
	if r.Sessions > 0 {
		p.restored = true
		p.timers.HandshakeCompleted(now) // the session works: no handshake due
	}
	return endpoint, r, nil
}

func dropReason(err error) string {
	switch {
	case errors.Is(err, rekey.ErrStateExpired):
		return "expired"
	case errors.Is(err, rekey.ErrStateClock):
		return "clock went back"
	}
	return "unusable"
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.LittleEndian.AppendUint64(b, 0)
	}
	return binary.LittleEndian.AppendUint64(b, uint64(t.UnixNano()))
}

// decoder reads the encoding above; the first error sticks and every read
// after it returns zero values, so callers check once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n > len(d.b) {
		if d.err == nil {
			d.err = errors.New("truncated")
		}
		return make([]byte, n)
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) byte() byte     { return d.bytes(1)[0] }
func (d *decoder) uint64() uint64 { return binary.LittleEndian.Uint64(d.bytes(8)) }
func (d *decoder) string() string {
	return string(d.bytes(int(binary.LittleEndian.Uint16(d.bytes(2)))))
}
func (d *decoder) rest() []byte { return d.b }
func (d *decoder) skip(n int)   { d.b = d.b[n:] }
func (d *decoder) time() time.Time {
	ns := d.uint64()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns))
}

// fail records err unless an earlier error stuck already.
func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}
