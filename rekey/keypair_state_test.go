package rekey

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

func chacha(key *[32]byte) (cipher.AEAD, error) { return chacha20poly1305.New(key[:]) }

func roundTrip(t *testing.T, s *KeypairState) *KeypairState {
	t.Helper()
	b, err := s.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := ParseKeypairState(b)
	if err != nil || n != len(b) {
		t.Fatalf("ParseKeypairState = %d of %d bytes, %v", n, len(b), err)
	}
	return got
}

func TestRetireImportKeepsCountersAndRefusesReplays(t *testing.T) {
	p := DefaultPolicy()
	i, r := pair(t, p, t0, 11, 22)
	now := at(time.Minute)
	var sent [][]byte
	for n := range 300 {
		c, ok := i.NextNonce(now)
		if !ok || c != uint64(n) {
			t.Fatalf("NextNonce = %d, %v", c, ok)
		}
		sent = append(sent, i.Send.Seal(nil, nonce(c), []byte{byte(c)}, nil))
	}
	// r accepts all but counter 7 (lost); 7 stays acceptable after the restart.
	for c := range sent {
		if c != 7 && r.CheckCounter(uint64(c), now) != Fresh {
			t.Fatalf("CheckCounter(%d) before export refused", c)
		}
	}
	si, err := i.Retire()
	if err != nil {
		t.Fatal(err)
	}
	sr, err := r.Retire()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := i.NextNonce(now); ok || r.CheckCounter(7, now) == Fresh || !i.IsZeroed() {
		t.Fatal("a retired keypair still seals or opens")
	}
	if _, err := i.Retire(); !errors.Is(err, ErrStateKeys) {
		t.Fatalf("second Retire = %v; want ErrStateKeys", err)
	}
	later := at(2 * time.Minute)
	i2, err := ImportKeypair(roundTrip(t, si), p, later, chacha)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ImportKeypair(roundTrip(t, sr), p, later, chacha)
	if err != nil {
		t.Fatal(err)
	}
	si.Zero()
	sr.Zero()
	if si.SendKey != ([32]byte{}) {
		t.Fatal("Zero left the key")
	}
	if i2.LocalIndex != 11 || i2.RemoteIndex != 22 || !i2.Initiator || r2.Initiator ||
		i2.SessionID != i.SessionID || !i2.Created.Equal(t0) {
		t.Fatalf("identity not restored: %+v", i2)
	}
	if c, ok := i2.NextNonce(later); !ok || c != 300 {
		t.Fatalf("restored NextNonce = %d, %v; want 300 (continue at the saved counter)", c, ok)
	}
	// The restored keys open what the old ones sealed.
	pt, err := r2.Recv.Open(nil, nonce(5), sent[5], nil)
	if err != nil || !bytes.Equal(pt, []byte{5}) {
		t.Fatalf("restored receive key does not open the old packet: %v", err)
	}
	for c := range sent {
		if c != 7 && r2.CheckCounter(uint64(c), later) == Fresh {
			t.Fatalf("counter %d accepted before the restart is accepted again after it", c)
		}
	}
	if r2.CheckCounter(7, later) != Fresh || r2.CheckCounter(7, later) == Fresh {
		t.Fatal("counter 7, never received, must be accepted once after the restart")
	}
	if r2.CheckCounter(300, later) != Fresh {
		t.Fatal("a new counter is refused after the restart")
	}
	// Age counts from the saved creation: no longer life for a restart.
	if !i2.Expired(at(p.RejectAfterTime)) {
		t.Fatal("restored keypair outlives reject_after")
	}
}

func TestImportRefusesExpiredAndFutureStates(t *testing.T) {
	p := DefaultPolicy()
	k, _ := pair(t, p, t0, 1, 2)
	s, err := k.Retire()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ImportKeypair(s, p, at(p.RejectAfterTime), chacha); !errors.Is(err, ErrStateExpired) {
		t.Fatalf("import at reject_after = %v; want ErrStateExpired", err)
	}
	if _, err := ImportKeypair(s, p, at(-time.Second), chacha); !errors.Is(err, ErrStateClock) {
		t.Fatalf("import before creation = %v; want ErrStateClock", err)
	}
	bad := func(*[32]byte) (cipher.AEAD, error) { return nil, errors.New("no such cipher") }
	if _, err := ImportKeypair(s, p, at(time.Second), bad); err == nil {
		t.Fatal("import with a failing cipher succeeded")
	}
	s.Replay.Window = 100
	if _, err := ImportKeypair(s, p, at(time.Second), chacha); err == nil {
		t.Fatal("import with an invalid replay window succeeded")
	}
}

// A restored keypair keeps the lifetimes it was made under: a restart with
// a longer reject_after configured must not let a key seal or open past the
// reject_after it had (nor rekey later), as a reload would not. A shorter
// configured lifetime applies; a version 1 state, which has none saved,
// takes the configured ones.
func TestImportKeepsLifetimesItWasMadeUnder(t *testing.T) {
	p := DefaultPolicy() // rekey 120 s, reject 180 s
	longer := p
	longer.RekeyAfterTime, longer.RejectAfterTime = 50*time.Minute, time.Hour
	shorter := p
	shorter.RekeyAfterTime, shorter.RejectAfterTime = 30*time.Second, time.Minute

	k, _ := pair(t, p, t0, 1, 2)
	s, err := k.Retire()
	if err != nil {
		t.Fatal(err)
	}
	s = roundTrip(t, s)
	k2, err := ImportKeypair(s, longer, at(170*time.Second), chacha)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.NeedsRekeyOnSend(at(121 * time.Second)) {
		t.Fatal("restored under a longer rekey_after: no rekey at the 120 s it was made under")
	}
	if _, ok := k2.NextNonce(at(p.RejectAfterTime)); ok || !k2.Expired(at(p.RejectAfterTime)) {
		t.Fatal("restored under a longer reject_after: the key seals past the 180 s it was made under")
	}
	if _, err := ImportKeypair(s, longer, at(p.RejectAfterTime+time.Second), chacha); !errors.Is(err, ErrStateExpired) {
		t.Fatalf("import past the saved reject_after under a longer one = %v; want ErrStateExpired", err)
	}
	if _, err := ImportKeypair(s, shorter, at(shorter.RejectAfterTime), chacha); !errors.Is(err, ErrStateExpired) {
		t.Fatalf("import past a shorter configured reject_after = %v; want ErrStateExpired", err)
	}

	// Version 1: no lifetimes saved; the importing policy's apply.
	s.RekeyAfter, s.RejectAfter = 0, 0
	b, err := s.AppendBinary(nil)
	if err != nil || b[0] != keypairStateVersionV1 {
		t.Fatalf("a state without lifetimes encodes as version %d, %v; want 1", b[0], err)
	}
	v1, _, err := ParseKeypairState(b)
	if err != nil {
		t.Fatal(err)
	}
	if k3, err := ImportKeypair(v1, longer, at(170*time.Second), chacha); err != nil || k3.Expired(at(p.RejectAfterTime)) {
		t.Fatalf("version 1 state under the configured reject_after: %v", err)
	}
}

// A restored keypair's age must run on the monotonic clock, as a fresh
// one's does: with only the saved wall-clock time, an NTP step back after
// the restore would let it seal past reject_after. Go compares two times on
// their monotonic readings only when both have one, so the test checks that
// the restored creation time has one (String prints it as "m=").
func TestImportAnchorsAgeToMonotonicClock(t *testing.T) {
	p := DefaultPolicy()
	now := time.Now() // has a monotonic reading, as the tunnel's clock does
	k, _ := pair(t, p, now.Add(-time.Minute), 1, 2)
	s, err := k.Retire()
	if err != nil {
		t.Fatal(err)
	}
	saved := roundTrip(t, s)
	if strings.Contains(saved.Created.String(), "m=") {
		t.Fatal("test setup: a decoded creation time cannot carry a monotonic reading")
	}
	k2, err := ImportKeypair(saved, p, now, chacha)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Created.Equal(saved.Created) {
		t.Fatalf("restored Created = %v; want the saved %v", k2.Created, saved.Created)
	}
	for what, ts := range map[string]time.Time{"Created": k2.Created, "reject-after deadline": k2.rejectAt, "rekey deadline": k2.rekeyAt} {
		if !strings.Contains(ts.String(), "m=") {
			t.Fatalf("restored keypair's %s %v has no monotonic reading: a wall clock stepped back would extend the key's life", what, ts)
		}
	}
}

func TestRetireWithoutRawKeys(t *testing.T) {
	a, _ := chacha20poly1305.New(make([]byte, 32))
	k := NewKeypair(a, a, nil, nil, 1, 2, [32]byte{}, t0, true, DefaultPolicy())
	if _, err := k.Retire(); !errors.Is(err, ErrStateKeys) {
		t.Fatalf("Retire without raw keys = %v; want ErrStateKeys", err)
	}
}

// Retire racing the data plane: every counter handed out before it is below
// the saved one, none is handed out after it, and every counter the receive
// side accepted is in the saved window.
func TestRetireRacingDataPlaneIsExact(t *testing.T) {
	p := DefaultPolicy()
	for range 20 {
		i, r := pair(t, p, t0, 1, 2)
		now := at(time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var issued, accepted []uint64
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := uint64(0); n < 2000; n++ {
					if c, ok := i.NextNonce(now); ok {
						mu.Lock()
						issued = append(issued, c)
						mu.Unlock()
					}
					if c := n*4 + uint64(g); r.CheckCounter(c, now) == Fresh {
						mu.Lock()
						accepted = append(accepted, c)
						mu.Unlock()
					}
				}
			}()
		}
		si, err := i.Retire()
		if err != nil {
			t.Fatal(err)
		}
		sr, err := r.Retire()
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for _, c := range issued {
			if c >= si.SendCounter {
				t.Fatalf("counter %d issued but saved next counter is %d: it would be sealed twice", c, si.SendCounter)
			}
		}
		r2, err := ImportKeypair(sr, p, now, chacha)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range accepted {
			if r2.CheckCounter(c, now) == Fresh {
				t.Fatalf("counter %d accepted before Retire is accepted again after import", c)
			}
		}
	}
}

func TestParseKeypairStateRefusesDamage(t *testing.T) {
	k, _ := pair(t, DefaultPolicy(), t0, 1, 2)
	s, _ := k.Retire()
	b, _ := s.AppendBinary(nil)
	for n := range b {
		if _, _, err := ParseKeypairState(b[:n]); !errors.Is(err, ErrStateFormat) {
			t.Fatalf("truncated to %d: %v; want ErrStateFormat", n, err)
		}
	}
	for _, off := range []int{0, 1, keypairStateFixed} {
		c := bytes.Clone(b)
		c[off] ^= 0x80
		if _, _, err := ParseKeypairState(c); !errors.Is(err, ErrStateFormat) {
			t.Fatalf("byte %d damaged: %v; want ErrStateFormat", off, err)
		}
	}
	// Two states back to back decode one after the other.
	two, _ := s.AppendBinary(bytes.Clone(b))
	_, n, err := ParseKeypairState(two)
	if err != nil || n != len(b) {
		t.Fatalf("first of two: %d, %v", n, err)
	}
	if _, _, err := ParseKeypairState(two[n:]); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseKeypairState(f *testing.F) {
	k, _ := pair(f, DefaultPolicy(), t0, 1, 2)
	s, _ := k.Retire()
	b, _ := s.AppendBinary(nil)
	f.Add(b)
	f.Add(b[:keypairStateFixed+17])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, n, err := ParseKeypairState(b)
		if err != nil {
			if !errors.Is(err, ErrStateFormat) {
				t.Fatalf("error %v does not wrap ErrStateFormat", err)
			}
			return
		}
		if n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		// Anything accepted re-encodes to the same bytes and imports or
		// fails cleanly.
		again, err := s.AppendBinary(nil)
		if err != nil || !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		ImportKeypair(s, DefaultPolicy(), s.Created.Add(time.Second), chacha)
	})
}

// A saved state is built by appending keypairs one after the other. When the
// buffer is full, the one holding the keys written so far must not be left
// to the garbage collector as it was (append would): AppendBinary clears it,
// and reserves its own room exactly, so no array but the returned one ever
// held a key, in either version of the encoding.
func TestAppendBinaryLeavesNoCopyOfKeys(t *testing.T) {
	k, _ := pair(t, DefaultPolicy(), t0, 1, 2)
	s, _ := k.Retire()
	defer s.Zero()
	v1 := *s
	v1.RekeyAfter = 0
	for _, c := range []struct {
		name string
		s    *KeypairState
	}{{"version 2", s}, {"version 1", &v1}} {
		first, err := c.s.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if cap(first) != len(first) {
			t.Fatalf("%s: %d bytes in an array of %d: the room reserved is not what is written", c.name, len(first), cap(first))
		}
		want := bytes.Clone(first)
		both, err := c.s.AppendBinary(first) // first is full: the bytes move
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(both[:len(want)], want) {
			t.Fatalf("%s: the first state changed when the second was appended", c.name)
		}
		if !bytes.Equal(first, make([]byte, len(first))) {
			t.Fatalf("%s: the array AppendBinary moved away from still holds the keys", c.name)
		}
		clear(want)
		clear(both)
	}
}
