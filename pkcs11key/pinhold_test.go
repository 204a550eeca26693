//go:build cgo

package pkcs11key

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
	"stunnel/internal/softhsmtest"
)

// dropSessions closes every session of k's token, as a token reset does:
// the next SharedSecret must log in again.
func dropSessions(t *testing.T, k *Key) {
	t.Helper()
	slot, err := findSlot(k.ctx, &k.uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := moduleOf(t, k).CloseAllSessions(slot); err != nil {
		t.Fatal(err)
	}
}

// TestWrongPINNotRetriedPerHandshake: once the token refused the PIN
// file's PIN after a session loss, a flood of handshakes makes no more
// logins with it (each would count toward locking the token) until the
// back-off passes, and then one; rewriting the file with the same PIN does
// not count as a change; a fixed PIN file works at the next handshake.
func TestWrongPINNotRetriedPerHandshake(t *testing.T) {
	tok, k, clock, peer, want := newClockedTokenKey(t)
	setPIN := func(pin string) {
		t.Helper()
		if err := os.WriteFile(tok.PinFile, []byte(pin+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// flood is many handshakes' worth of SharedSecret calls, each refused
	// with a PIN error; it returns the logins they made.
	flood := func(n int) uint64 {
		t.Helper()
		before := loginAttempts.Load()
		for range n {
			_, err := k.SharedSecret(peer)
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindPIN || !strings.Contains(err.Error(), `wrong PIN for token "gw"`) {
				t.Fatalf("with a wrong PIN file: %v, want a wrong-PIN error", err)
			}
			if strings.Contains(err.Error(), "0000") || strings.Contains(err.Error(), softhsmtest.PIN) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line without the PIN: %q", err)
			}
		}
		return loginAttempts.Load() - before
	}

	setPIN("0000")
	dropSessions(t, k)
	if n := flood(100); n != 1 {
		t.Fatalf("100 handshakes with a wrong PIN file made %d logins, want 1", n)
	}
	setPIN("0000") // rewritten, same wrong PIN: still held
	if n := flood(10); n != 0 {
		t.Fatalf("rewriting the same wrong PIN made %d logins, want 0", n)
	}
	clock.Advance(pinBackoffMin)
	if n := flood(10); n != 1 {
		t.Fatalf("after the back-off: %d logins, want 1", n)
	}
	clock.Advance(pinBackoffMin) // the second back-off is longer
	if n := flood(10); n != 0 {
		t.Fatalf("within the second, longer back-off: %d logins, want 0", n)
	}
	clock.Advance(pinBackoffMin)
	if n := flood(1); n != 1 {
		t.Fatalf("after the second back-off: %d logins, want 1", n)
	}

	setPIN(softhsmtest.PIN)
	if got, err := k.SharedSecret(peer); err != nil || got != want {
		t.Fatalf("the next handshake after fixing the PIN file: %v", err)
	}
	// A later refusal starts from the shortest back-off again.
	setPIN("0000")
	dropSessions(t, k)
	flood(1)
	k.mu.Lock()
	until := k.hold.until
	k.mu.Unlock()
	if got := until.Sub(clock.Now()); got != pinBackoffMin {
		t.Errorf("back-off after a success and a new refusal: %v, want %v", got, pinBackoffMin)
	}
}

// TestPINHoldFinalTry: when the token says one more wrong PIN locks it,
// no back-off lifts the hold, only a new PIN in the file. SoftHSM2 never
// says so, so the refusal is given here as openSession would make it.
func TestPINHoldFinalTry(t *testing.T) {
	pinFile := t.TempDir() + "/pin"
	if err := os.WriteFile(pinFile, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	k := &Key{uri: URI{Token: "gw"}, pinFile: pinFile, now: clock.Now}
	k.pinKey[0] = 1
	err := k.holdPINLocked(&pinRefusal{sum: k.pinSum([]byte("0000")), finalTry: true})
	if err == nil || !strings.Contains(err.Error(), "one more locks the token") {
		t.Fatalf("final-try hold: %v", err)
	}
	clock.Advance(100 * pinBackoffMax)
	if k.pinHeldLocked() == nil {
		t.Fatal("a final-try hold was lifted by time alone")
	}
	if err := os.WriteFile(pinFile, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.pinHeldLocked(); err != nil {
		t.Fatalf("a new PIN in the file did not lift the hold: %v", err)
	}
}

func TestPINBackoffGrows(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Minute, 2: 10 * time.Minute, 3: 20 * time.Minute, 4: 40 * time.Minute, 5: time.Hour, 50: time.Hour} {
		if got := pinBackoff(n); got != want {
			t.Errorf("pinBackoff(%d) = %v, want %v", n, got, want)
		}
	}
}
