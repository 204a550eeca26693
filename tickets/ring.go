package tickets

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"

	"stunnel/handshake"
)

// ErrNoTicketKey: no key is in its encrypt-decrypt life, so no ticket can be
// issued. The error is a *NoKeyError; First is set on the first refusal of an
// outage, so the caller logs it once.
var ErrNoTicketKey = errors.New("no ticket key in its encrypt-decrypt life: no session tickets are issued")

// ErrRingClosed: the ring was closed (the tunnel stopped) and its keys
// erased; it seals, opens and takes no key any more.
var ErrRingClosed = errors.New("ticket ring is closed: its keys are erased")

// NoKeyError is Seal's error when no key can seal. Hint, when set, says
// what to do instead of the key file's remedy (SetNoKeyHint).
type NoKeyError struct {
	First bool
	Hint  string
}

func (e *NoKeyError) Error() string {
	if e.Hint != "" {
		return ErrNoTicketKey.Error() + "; " + e.Hint
	}
	return ErrNoTicketKey.Error() + "; add a key to the key file (stunnel tickets add FILE) or remove key_file for in-memory keys"
}
func (e *NoKeyError) Unwrap() error { return ErrNoTicketKey }

// Options configure a Ring. Zero values take the defaults.
type Options struct {
	EncryptDecryptLifetime time.Duration    // lifetime of generated keys; default 2h
	DecryptLifetime        time.Duration    // default 13h
	ReauthAfter            time.Duration    // default 24h: longest time from a static-key proof to a resumption
	Now                    func() time.Time // nil: time.Now
	Rand                   io.Reader        // nil: crypto/rand
	MaxUsed                int              // bound of the used-ticket cache; default 65536
}

// Ring holds one interface's ticket keys and used-ticket cache. It implements
// handshake.TicketOpener. Safe for concurrent use.
type Ring struct {
	// opt: Now, Rand and MaxUsed are immutable after NewRing; the three
	// lifetimes are guarded by mu (Reconfigure changes them on reload).
	opt Options

	mu       sync.Mutex
	keys     []*Key                 // guarded by mu; sorted by Created, newest last
	fromFile bool                   // guarded by mu: keys come from a key file, none are generated
	noKey    bool                   // guarded by mu: the current outage was already reported
	noKeyFix string                 // guarded by mu: NoKeyError's Hint ("" = the key file's remedy)
	used     map[[32]byte]time.Time // guarded by mu: hash of a used ticket -> its expiry
	closed   bool                   // guarded by mu: Close ran; no key is made or taken again
}

// NewRing makes a ring in in-memory mode: it generates its own keys (call
// LoadFile to switch to a key file).
func NewRing(opt Options) *Ring {
	if opt.EncryptDecryptLifetime <= 0 {
		opt.EncryptDecryptLifetime = DefaultEncryptDecryptLifetime
	}
	if opt.DecryptLifetime <= 0 {
		opt.DecryptLifetime = DefaultDecryptLifetime
	}
	if opt.ReauthAfter <= 0 {
		opt.ReauthAfter = DefaultReauthAfter
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.MaxUsed <= 0 {
		opt.MaxUsed = 1 << 16
	}
	return &Ring{opt: opt, used: make(map[[32]byte]time.Time)}
}

// ReauthAfter is the ring's reauth_after.
func (r *Ring) ReauthAfter() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opt.ReauthAfter
}

// Reconfigure applies a reloaded [tickets] table: the lifetimes of keys
// generated from now on, and reauth_after for every ticket sealed or opened
// from now on (a shorter one refuses tickets issued under the longer one).
// Zero values keep the current setting. Keys and the used record are kept.
func (r *Ring) Reconfigure(encryptDecrypt, decryptOnly, reauthAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if encryptDecrypt > 0 {
		r.opt.EncryptDecryptLifetime = encryptDecrypt
	}
	if decryptOnly > 0 {
		r.opt.DecryptLifetime = decryptOnly
	}
	if reauthAfter > 0 {
		r.opt.ReauthAfter = reauthAfter
	}
}

// UseMemoryKeys leaves key-file mode (a reload dropped key_file): the ring
// generates its own keys again, as one made without a file does. The keys
// it holds stay until they end, so the tickets they sealed still open.
func (r *Ring) UseMemoryKeys() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fromFile = false
}

// Rotate erases keys whose decrypt-only life has ended and, in in-memory mode,
// adds a key once the newest one is half-way through its encrypt-decrypt life
// (or none can seal). Seal and Open call it; call it also from a timer (every
// minute) so erased keys do not linger.
func (r *Ring) Rotate(now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rotateLocked(now)
}

func (r *Ring) rotateLocked(now time.Time) error {
	if r.closed {
		// An in-memory ring would otherwise make a fresh key here, after
		// Close erased the others, that nothing would ever erase.
		return ErrRingClosed
	}
	kept := r.keys[:0]
	for _, k := range r.keys {
		if k.State(now) == KeyExpired {
			k.Erase()
			continue
		}
		kept = append(kept, k)
	}
	clear(r.keys[len(kept):])
	r.keys = kept
	if r.fromFile {
		return nil
	}
	if n := r.newestSealerLocked(now); n != nil && now.Sub(n.Created) < n.EncryptDecrypt/2 {
		return nil
	}
	k, err := GenerateKey(r.opt.Rand, now, r.opt.EncryptDecryptLifetime, r.opt.DecryptLifetime)
	if err != nil {
		return err
	}
	r.addLocked(&k)
	return nil
}

func (r *Ring) addLocked(k *Key) {
	r.keys = append(r.keys, k)
	sort.SliceStable(r.keys, func(i, j int) bool { return r.keys[i].Created.Before(r.keys[j].Created) })
}

// newestSealerLocked is the newest key in its encrypt-decrypt life, or nil.
func (r *Ring) newestSealerLocked(now time.Time) *Key {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i].State(now) == KeyEncryptDecrypt {
			return r.keys[i]
		}
	}
	return nil
}

// Seal seals st under the newest key in its encrypt-decrypt life. It sets
// st.IssuedAt to now and caps st.Expiry (zero: no wish) at the key's end, at
// st.AuthTime + reauth_after and at now + handshake.MaxTicketLifetime. Errors: *NoKeyError, an expiry not in the
// future, or ErrRingClosed.
func (r *Ring) Seal(st *handshake.TicketState) ([]byte, error) {
	now := r.opt.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.rotateLocked(now); err != nil {
		return nil, err
	}
	k := r.newestSealerLocked(now)
	if k == nil {
		first := !r.noKey
		r.noKey = true
		return nil, &NoKeyError{First: first, Hint: r.noKeyFix}
	}
	r.noKey = false
	exp := k.End()
	if reauth := st.AuthTime.Add(r.opt.ReauthAfter); reauth.Before(exp) {
		exp = reauth
	}
	if !st.Expiry.IsZero() && st.Expiry.Before(exp) {
		exp = st.Expiry
	}
	// Nor past what the new-ticket message can tell the initiator: with
	// lifetimes of centuries ("never") the expiry would lie past 2262, the
	// end of the Unix nanoseconds the ticket carries it in, and wrap.
	if limit := now.Add(handshake.MaxTicketLifetime); limit.Before(exp) {
		exp = limit
	}
	if !exp.After(now) {
		return nil, fmt.Errorf("%w: no ticket issued, the last static-key proof is too old", handshake.ErrReauthRequired)
	}
	st.IssuedAt, st.Expiry = now, exp
	return seal(k, st, r.opt.Rand)
}

// Issue builds the new-ticket control message (handshake.MarshalTicketMessage)
// for a session the responder just completed: full (authTime = now) or resumed
// (authTime = the opened ticket's AuthTime). responder is our own static
// public key: the ticket resumes only at that identity. peerStatic is the
// peer's configured static key; the ticket names the pre-shared key the
// session was made under (sess.PSKTag, which the session core checked
// against the peer's). The caller seals the result as a data packet.
func (r *Ring) Issue(sess *handshake.Session, responder, peerStatic handshake.PublicKey, authTime time.Time) ([]byte, error) {
	st := handshake.TicketState{
		PeerID:           sess.PeerID,
		PeerStatic:       peerStatic,
		ResumptionSecret: sess.ResumptionSecret,
		Cipher:           sess.Cipher,
		AuthTime:         authTime,
		PSKTag:           sess.PSKTag,
		HasPSKTag:        true,
		ResponderStatic:  responder,
	}
	defer st.Zero()
	t, err := r.Seal(&st)
	if err != nil {
		return nil, err
	}
	life := st.Expiry.Sub(st.IssuedAt)
	if life < time.Second {
		return nil, fmt.Errorf("%w: the ticket would live under a second", handshake.ErrReauthRequired)
	}
	return handshake.MarshalTicketMessage(t, min(life, handshake.MaxTicketLifetime))
}

// OpenTicket implements handshake.TicketOpener: it checks the frame, finds the
// key by name (ErrTicketKeyUnknown), refuses a key past its decrypt-only life
// (ErrTicketExpired), authenticates (ErrTicketInvalid), then reauth_after
// (ErrReauthRequired) and the ticket's own expiry (ErrTicketExpired).
func (r *Ring) OpenTicket(ticket []byte) (*handshake.TicketState, error) {
	name, err := ticketName(ticket)
	if err != nil {
		return nil, err
	}
	now := r.opt.Now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", handshake.ErrTicketKeyUnknown, ErrRingClosed)
	}
	var k *Key
	for _, c := range r.keys {
		if c.Name == name {
			k = c
			break
		}
	}
	if k == nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w (%x)", handshake.ErrTicketKeyUnknown, name[:4])
	}
	if k.State(now) == KeyExpired {
		r.rotateLocked(now) // erase it now; the error below stands either way
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: key %x ended its decrypt-only life at %s", handshake.ErrTicketExpired, name[:4], k.End().UTC().Format(time.RFC3339))
	}
	st, err := open(k, ticket)
	keyEnd, reauthAfter := k.End(), r.opt.ReauthAfter
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if st.AuthTime.Add(reauthAfter).Before(now) {
		st.Zero()
		return nil, fmt.Errorf("%w (last proof %s)", handshake.ErrReauthRequired, st.AuthTime.UTC().Format(time.RFC3339))
	}
	if !now.Before(st.Expiry) || !now.Before(keyEnd) {
		st.Zero()
		return nil, fmt.Errorf("%w at %s", handshake.ErrTicketExpired, st.Expiry.UTC().Format(time.RFC3339))
	}
	return st, nil
}

// ConsumeTicket implements handshake.TicketOpener: it records the ticket as
// used until st.Expiry.
//
// The record is bounded (Options.MaxUsed). When it is full of live entries it
// forgets the eighth of them that expire first, instead of refusing: every
// rekey of a resuming peer consumes a ticket that is recorded for the rest of
// its key's life (13-15 h with the default lifetimes), so with a refusal a
// responder of more than about 150 peers rekeying every 2 minutes would turn
// every resumption into a full handshake, each logged as a reused ticket.
// Forgetting is safe because this record is not the only guard: the message
// 5 that carried a forgotten ticket is still refused by its peer's timestamp
// (handshake.Responder, step 7 of docs/PROTOCOL.md 10.5), and a ticket whose
// message 5 never reached us was never used.
func (r *Ring) ConsumeTicket(ticket []byte, st *handshake.TicketState) error {
	id := blake2s.Sum256(ticket)
	now := r.opt.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if exp, ok := r.used[id]; ok && now.Before(exp) {
		return handshake.ErrTicketReused
	}
	if len(r.used) >= r.opt.MaxUsed {
		r.pruneUsedLocked(now)
	}
	r.used[id] = st.Expiry
	return nil
}

// pruneUsedLocked drops the expired entries of the used-ticket record and,
// if that frees less than an eighth of it, the entries that expire first
// until an eighth is free: a full record is then sorted once per MaxUsed/8
// tickets, not scanned at every one.
func (r *Ring) pruneUsedLocked(now time.Time) {
	for h, exp := range r.used {
		if !now.Before(exp) {
			delete(r.used, h)
		}
	}
	keep := r.opt.MaxUsed - max(r.opt.MaxUsed/8, 1)
	if len(r.used) <= keep {
		return
	}
	exps := make([]int64, 0, len(r.used))
	for _, exp := range r.used {
		exps = append(exps, exp.UnixNano())
	}
	slices.Sort(exps)
	// Forget the entries expiring before the cut, then only as many of
	// those expiring at it as the eighth needs. Many entries share one
	// expiry (every ticket a key seals while auth time + reauth_after is
	// past the key's end expires at that end: with one long-lived key in
	// a key file, all of them), and forgetting every entry at the cut
	// would empty the record instead of an eighth of it.
	cut := exps[len(exps)-keep-1]
	drop := len(exps) - keep
	for h, exp := range r.used {
		if exp.UnixNano() < cut {
			delete(r.used, h)
			drop--
		}
	}
	for h, exp := range r.used {
		if drop <= 0 {
			break
		}
		if exp.UnixNano() == cut {
			delete(r.used, h)
			drop--
		}
	}
}

// Add inserts a key (from an operator, or a control command). A key with the
// same name is refused.
func (r *Ring) Add(k Key) error {
	if k.IsErased() {
		return errors.New("ticket key has an all-zero secret")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrRingClosed
	}
	for _, c := range r.keys {
		if c.Name == k.Name {
			return fmt.Errorf("ticket key %s is already present", k.NameHex())
		}
	}
	r.addLocked(&k)
	return nil
}

// Retire erases the key named nameHex at once: tickets it sealed stop opening.
func (r *Ring) Retire(nameHex string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, k := range r.keys {
		if k.NameHex() == nameHex {
			k.Erase()
			r.keys = append(r.keys[:i], r.keys[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("no ticket key named %s", nameHex)
}

// Keys lists the keys for `show`, oldest first: names, states, transitions.
func (r *Ring) Keys() []KeyInfo {
	now := r.opt.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]KeyInfo, 0, len(r.keys))
	for _, k := range r.keys {
		out = append(out, KeyInfo{Name: k.NameHex(), State: k.State(now), Created: k.Created, EncryptUntil: k.EncryptUntil(), End: k.End()})
	}
	return out
}

// Close erases every key secret (the interface goes down) and closes the
// ring for good: Seal, OpenTicket, Rotate, Add and LoadFile then fail with
// ErrRingClosed, and SetExternalKeys takes nothing, so no key is made or
// taken after the erasure (an in-memory ring's Seal would make one). A nil
// ring (resumption off) and a second Close do nothing.
func (r *Ring) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		k.Erase()
	}
	clear(r.keys)
	r.keys = nil
	r.closed = true
}
