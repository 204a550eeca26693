package tickets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"stunnel/handshake"
)

// manualClock can be set anywhere, forward or back.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *manualClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

func state(now time.Time) *handshake.TicketState {
	return &handshake.TicketState{PeerID: "client", AuthTime: now, ResumptionSecret: [32]byte{7}, Cipher: handshake.CipherChaCha20Poly1305}
}

// TestKeyLifecycleOverDays runs an in-memory ring for four days in one-minute
// steps: a ticket is issued at every step (issuance never pauses), a new key
// arrives at half of the current one's encrypt-decrypt life, each key's first
// ticket opens until 1 ns before the key's end and not at its end, and every
// key is zero once erased.
func TestKeyLifecycleOverDays(t *testing.T) {
	clk := &manualClock{t: t0}
	r := NewRing(Options{Now: clk.Now})
	type tracked struct {
		key    *Key
		ticket []byte
	}
	byName := map[[NameSize]byte]*tracked{}
	var order []*tracked
	checked := 0
	for step := 0; step < 4*24*60; step++ {
		now := clk.Now()
		tk, err := r.Seal(state(now))
		if err != nil {
			t.Fatalf("at %v: Seal: %v", now.Sub(t0), err)
		}
		name, _ := ticketName(tk)
		if byName[name] == nil {
			r.mu.Lock()
			var k *Key
			for _, c := range r.keys {
				if c.Name == name {
					k = c
				}
			}
			r.mu.Unlock()
			if n := len(order); n > 0 && k.Created.Sub(order[n-1].key.Created) != DefaultEncryptDecryptLifetime/2 {
				t.Fatalf("key %d created %v after the previous, want %v", n, k.Created.Sub(order[n-1].key.Created), DefaultEncryptDecryptLifetime/2)
			}
			byName[name] = &tracked{key: k, ticket: tk}
			order = append(order, byName[name])
		}
		if len(r.Keys()) > 16 {
			t.Fatalf("at %v: %d keys held, at most 16 expected", now.Sub(t0), len(r.Keys()))
		}
		next := now.Add(time.Minute)
		for _, tr := range order {
			end := tr.key.End()
			if end.After(now) && !end.After(next) {
				clk.Set(end.Add(-time.Nanosecond))
				if _, err := r.OpenTicket(tr.ticket); err != nil {
					t.Fatalf("key %s: ticket refused 1 ns before the key's end: %v", tr.key.NameHex(), err)
				}
				clk.Set(end)
				_, err := r.OpenTicket(tr.ticket)
				wantErr(t, err, handshake.ErrTicketExpired, "ticket at its key's end")
				if !tr.key.IsErased() {
					t.Fatal("expired key not zeroed")
				}
				checked++
			}
		}
		clk.Set(next)
		if err := r.Rotate(next); err != nil {
			t.Fatal(err)
		}
	}
	if len(order) < 90 || checked < 70 {
		t.Fatalf("only %d keys made, %d ends checked over four days", len(order), checked)
	}
	for _, tr := range order {
		if tr.key.State(clk.Now()) == KeyExpired && !tr.key.IsErased() {
			t.Fatalf("key %s past its end is not zero", tr.key.NameHex())
		}
	}
	r.Close()
	for _, tr := range order {
		if !tr.key.IsErased() {
			t.Fatal("Close left a key")
		}
	}
}

func TestTicketExpiryNeverPastKeyEnd(t *testing.T) {
	clk := &manualClock{t: t0}
	r := NewRing(Options{Now: clk.Now, ReauthAfter: 1000 * time.Hour})
	for i := 0; i < 40; i++ {
		st := state(clk.Now())
		tk, err := r.Seal(st)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := ticketName(tk)
		for _, k := range r.Keys() {
			if k.Name == hexName(name) && st.Expiry.After(k.End) {
				t.Fatalf("ticket expiry %v after its key's end %v", st.Expiry, k.End)
			}
		}
		clk.Add(17 * time.Minute)
	}
}

func hexName(n [NameSize]byte) string { k := Key{Name: n}; return k.NameHex() }

// sealN seals n tickets on r, each of a fresh state at clk's time that
// set (if not nil) changes first, and returns the tickets and states.
func sealN(t *testing.T, r *Ring, clk *manualClock, n int, set func(i int, st *handshake.TicketState)) ([][]byte, []*handshake.TicketState) {
	t.Helper()
	var tks [][]byte
	var sts []*handshake.TicketState
	for i := range n {
		st := state(clk.Now())
		if set != nil {
			set(i, st)
		}
		tk, err := r.Seal(st)
		if err != nil {
			t.Fatal(err)
		}
		tks, sts = append(tks, tk), append(sts, st)
	}
	return tks, sts
}

// A full used-ticket record forgets the entries that expire first, an
// eighth of it, and keeps refusing the rest: a responder with many resuming
// peers must not refuse every resumption once the record is full.
func TestUsedCacheBounded(t *testing.T) {
	clk := &manualClock{t: t0}
	const max = 16
	r := NewRing(Options{Now: clk.Now, MaxUsed: max})
	tks, sts := sealN(t, r, clk, max+1, func(i int, st *handshake.TicketState) {
		st.Expiry = clk.Now().Add(time.Duration(max+1-i) * time.Minute) // the later, the sooner it expires
	})
	for i := 0; i < max; i++ {
		if err := r.ConsumeTicket(tks[i], sts[i]); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, r.ConsumeTicket(tks[0], sts[0]), handshake.ErrTicketReused, "second use")
	if err := r.ConsumeTicket(tks[max], sts[max]); err != nil {
		t.Fatalf("a new ticket with the record full of live entries: %v", err)
	}
	if len(r.used) > max {
		t.Fatalf("record holds %d entries, bound %d", len(r.used), max)
	}
	// Tickets 14 and 15 expired first of the live ones: forgotten. The
	// others, and the new one, are still refused a second time.
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, max} {
		wantErr(t, r.ConsumeTicket(tks[i], sts[i]), handshake.ErrTicketReused, fmt.Sprintf("ticket %d, second use", i))
	}
	for _, i := range []int{max - 2, max - 1} { // here the timestamp of their message 5 refuses them
		if err := r.ConsumeTicket(tks[i], sts[i]); err != nil {
			t.Errorf("ticket %d (among the first to expire) was kept: %v", i, err)
		}
	}
	clk.Add(time.Hour) // all expired: pruned at the next full record
	for i := 0; i < max; i++ {
		st := state(clk.Now())
		st.Expiry = clk.Now().Add(time.Minute)
		tk, err := r.Seal(st)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.ConsumeTicket(tk, st); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.used) > max {
		t.Fatalf("record holds %d entries after expiry, bound %d", len(r.used), max)
	}
}

func writeKeys(t *testing.T, path string, keys ...Key) {
	t.Helper()
	if err := WriteKeyFile(path, keys); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFileFleetAndNoKey(t *testing.T) {
	clk := &manualClock{t: t0}
	dir := t.TempDir()
	path := filepath.Join(dir, "ticket.keys")
	k1, err := GenerateKey(nil, t0, time.Hour, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, path, k1)
	a, b := NewRing(Options{Now: clk.Now}), NewRing(Options{Now: clk.Now})
	for _, r := range []*Ring{a, b} {
		if err := r.LoadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	tk, err := a.Seal(state(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenTicket(tk); err != nil {
		t.Fatalf("gateway B cannot open gateway A's ticket: %v", err)
	}
	// Past the only key's encrypt-decrypt life: no tickets, reported once.
	clk.Add(time.Hour)
	_, err = a.Seal(state(clk.Now()))
	var nk *NoKeyError
	if !errors.As(err, &nk) || !nk.First || !errors.Is(err, ErrNoTicketKey) {
		t.Fatalf("first Seal without a key: %v", err)
	}
	if _, err = a.Seal(state(clk.Now())); !errors.As(err, &nk) || nk.First {
		t.Fatalf("second Seal without a key: %v (First must be false)", err)
	}
	if _, err := b.OpenTicket(tk); err != nil {
		t.Fatalf("decrypt-only key refuses: %v", err)
	}
	// The operator adds a key; SIGHUP re-reads.
	k2, _ := GenerateKey(nil, clk.Now(), time.Hour, 2*time.Hour)
	keys, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, path, append(keys, k2)...)
	if err := a.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Seal(state(clk.Now())); err != nil {
		t.Fatalf("after adding a key: %v", err)
	}
	// File mode never generates keys.
	clk.Add(10 * time.Hour)
	if _, err := a.Seal(state(clk.Now())); !errors.As(err, &nk) || !nk.First {
		t.Fatalf("file mode past every key: %v", err)
	}
	if len(a.Keys()) != 0 {
		t.Fatalf("expired keys kept: %v", a.Keys())
	}
}

func TestKeyFileRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	k, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	writeKeys(t, path, k)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: %v", err)
	}
	good := string(MarshalKeyFile([]Key{k}))
	line := strings.Split(good, "\n")[1]
	f := strings.Fields(line)
	cases := map[string]string{
		"fields":   f[0] + " " + f[1],
		"name":     "zz" + line[2:],
		"secret":   f[0] + " AAAA " + f[2] + " " + f[3] + " " + f[4],
		"zero":     f[0] + " " + strings.Repeat("A", 43) + "= " + f[2] + " " + f[3] + " " + f[4],
		"created":  f[0] + " " + f[1] + " yesterday " + f[3] + " " + f[4],
		"lifetime": f[0] + " " + f[1] + " " + f[2] + " 0s " + f[4],
		"twice":    line + "\n" + line,
	}
	for what, body := range cases {
		_, err := ParseKeyFile("F", []byte("# c\n\n"+body+"\n"))
		if err == nil {
			t.Fatalf("%s: accepted", what)
		}
		if !strings.HasPrefix(err.Error(), "F:3: ") && !strings.HasPrefix(err.Error(), "F:4: ") {
			t.Fatalf("%s: error %q lacks FILE:LINE", what, err)
		}
		if strings.Contains(err.Error(), f[1]) {
			t.Fatalf("%s: error reveals the secret", what)
		}
	}
	keys, err := ParseKeyFile("F", []byte(good))
	if err != nil || len(keys) != 1 || keys[0].Name != k.Name || keys[0].secret != k.secret || !keys[0].Created.Equal(k.Created) {
		t.Fatalf("round trip: %v", err)
	}
}

// Close, at the tunnel's stop, erases every key secret and closes the ring
// for good: before, an in-memory ring's next Seal made a fresh key (and
// sealed with it) that nothing would erase, and a key file or the etcd sync
// could fill it again. After Close every entry point fails cleanly, with
// ErrRingClosed, without panicking and without taking a key.
func TestCloseErasesKeysAndRefusesAfter(t *testing.T) {
	clk := &manualClock{t: t0}
	path := filepath.Join(t.TempDir(), "ticket.keys")
	fileKey, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	writeKeys(t, path, fileKey)
	for _, fromFile := range []bool{false, true} {
		r := NewRing(Options{Now: clk.Now})
		if fromFile {
			if err := r.LoadFile(path); err != nil {
				t.Fatal(err)
			}
		}
		tk, err := r.Seal(state(clk.Now()))
		if err != nil {
			t.Fatal(err)
		}
		held := append([]*Key(nil), r.keys...) // the ring's own keys, to look at after Close
		if len(held) == 0 {
			t.Fatal("no key to erase")
		}
		r.Close()
		for _, k := range held {
			if !k.IsErased() {
				t.Fatalf("file=%v: Close left key %s's secret", fromFile, k.NameHex())
			}
		}
		if _, err := r.Seal(state(clk.Now())); !errors.Is(err, ErrRingClosed) {
			t.Errorf("file=%v: Seal after Close: %v; want ErrRingClosed", fromFile, err)
		}
		if st, err := r.OpenTicket(tk); st != nil || !errors.Is(err, ErrRingClosed) || !errors.Is(err, handshake.ErrTicketKeyUnknown) {
			t.Errorf("file=%v: OpenTicket after Close: %v; want ErrRingClosed (an unknown key to the handshake)", fromFile, err)
		}
		if err := r.Rotate(clk.Now().Add(time.Hour)); !errors.Is(err, ErrRingClosed) {
			t.Errorf("file=%v: Rotate after Close: %v; want ErrRingClosed", fromFile, err)
		}
		k, _ := GenerateKey(nil, clk.Now(), time.Hour, time.Hour)
		if err := r.Add(k); !errors.Is(err, ErrRingClosed) {
			t.Errorf("file=%v: Add after Close: %v; want ErrRingClosed", fromFile, err)
		}
		r.SetExternalKeys([]Key{k}) // the etcd sync, late
		if err := r.LoadFile(path); !errors.Is(err, ErrRingClosed) {
			t.Errorf("file=%v: LoadFile after Close: %v; want ErrRingClosed", fromFile, err)
		}
		if len(r.keys) != 0 || len(r.Keys()) != 0 {
			t.Errorf("file=%v: a closed ring holds %d keys", fromFile, len(r.keys))
		}
		r.Close() // twice: nothing
	}
	var off *Ring // resumption off: run closes it all the same
	off.Close()
}

// Tickets sealed by one key while their auth time + reauth_after is past
// the key's end all expire at that end. A full record of them forgets an
// eighth, as any full record does, not all of them: the rest stay refused.
func TestUsedCacheBoundedSameExpiry(t *testing.T) {
	clk := &manualClock{t: t0}
	const max = 16
	r := NewRing(Options{Now: clk.Now, MaxUsed: max})
	tks, sts := sealN(t, r, clk, max+1, nil)
	for i, st := range sts {
		if !st.Expiry.Equal(sts[0].Expiry) {
			t.Fatalf("ticket %d expires at %v, ticket 0 at %v: want one expiry", i, st.Expiry, sts[0].Expiry)
		}
	}
	for i := 0; i <= max; i++ {
		if err := r.ConsumeTicket(tks[i], sts[i]); err != nil {
			t.Fatalf("ticket %d, first use: %v", i, err)
		}
	}
	if len(r.used) > max {
		t.Fatalf("record holds %d entries, bound %d", len(r.used), max)
	}
	// Looked up, not consumed again: a second ConsumeTicket of a
	// forgotten ticket records it anew and may prune others meanwhile.
	kept := 0
	for i := 0; i <= max; i++ {
		if _, ok := r.used[blake2s.Sum256(tks[i])]; ok {
			kept++
		}
	}
	// max-max/8 kept, then the new one: at most an eighth forgotten.
	if want := max - max/8 + 1; kept < want {
		t.Fatalf("%d of %d used tickets still recorded after the record filled up, want at least %d (an eighth forgotten)", kept, max+1, want)
	}
	wantErr(t, r.ConsumeTicket(tks[max], sts[max]), handshake.ErrTicketReused, "the newest ticket, second use")
}
