package tickets

import (
	"math"
	"testing"
	"time"

	"stunnel/handshake"
)

// A ticket's expiry travels as Unix nanoseconds, which end in 2262. With
// reauth_after and the key lifetimes at the largest duration there is (292
// years, "never", as an operator may write it), the expiry, the earlier of
// the key's end and auth time + reauth_after, lay past 2262 and wrapped in
// the ticket: every ticket was refused as expired, and resumption silently
// never worked. The expiry is capped at the longest lifetime the
// new-ticket message can tell the initiator (MaxTicketLifetime).
func TestTicketWithLifetimesPastTheEncodingOpens(t *testing.T) {
	forever := time.Duration(math.MaxInt64)
	clk := &manualClock{t: t0}
	r := NewRing(Options{Now: clk.Now, EncryptDecryptLifetime: forever, DecryptLifetime: forever, ReauthAfter: forever})
	st := state(t0)
	tk, err := r.Seal(st)
	if err != nil {
		t.Fatal(err)
	}
	if life := st.Expiry.Sub(st.IssuedAt); life <= 0 || life > handshake.MaxTicketLifetime {
		t.Fatalf("sealed with a life of %v, want at most %v", life, handshake.MaxTicketLifetime)
	}
	clk.Add(24 * time.Hour)
	got, err := r.OpenTicket(tk)
	if err != nil {
		t.Fatalf("a day-old ticket under lifetimes of centuries: %v", err)
	}
	if !got.Expiry.Equal(st.Expiry) {
		t.Fatalf("the ticket's expiry came back as %v, sealed as %v", got.Expiry, st.Expiry)
	}
}
