package session

import (
	"errors"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

// The retry may only repeat a ticket the responder did not take: a cookie
// reply is no proof of that (anyone who saw the message's mac1 can make
// one), so the responder's one-use record still decides. A ticket it did
// take is refused as reused, and the initiator's next retry is a full
// handshake, as after any refused resumption.
func TestCookieRetryOfSpentTicketFallsBackToFull(t *testing.T) {
	now := t0
	a, b := ticketSides(t, &now)
	now = now.Add(2 * time.Minute)
	first, _, _ := a.peer.Initiate(now, "b")
	// b opened it (its answer is lost), and a forged cookie reply comes.
	if _, sess, st, err := b.host.ConsumeResumption(first, b.reg.Reserve()); err != nil {
		t.Fatal(err)
	} else {
		sess.Zero()
		st.Zero()
	}
	if err := a.peer.ConsumeCookieReply(cookieFor(t, b, first, now)); err != nil {
		t.Fatal(err)
	}
	retry, _, _ := a.peer.Initiate(now, "b")
	now = now.Add(30 * time.Millisecond) // past the responder's per-peer interval
	if _, _, _, err := b.host.ConsumeResumption(retry, b.reg.Reserve()); !errors.Is(err, handshake.ErrTicketReused) {
		t.Fatalf("a spent ticket's retry: %v, want ErrTicketReused", err)
	}
	sent := a.peer.sent
	now = now.Add(6 * time.Second)
	if a.peer.Due(now)&rekey.ActSendInitiation == 0 {
		t.Fatal("no retry due")
	}
	full, _, _ := a.peer.Initiate(now, "b")
	if full[0] != handshake.MessageTypeInitiation {
		t.Fatalf("after the refused retry: a message of type %d, want a full initiation", full[0])
	}
	if sent == nil || sent.secret != ([32]byte{}) || a.peer.sent != nil {
		t.Fatal("the abandoned resumption's ticket secret was not zeroed")
	}
}

// The ticket kept for a cookie retry goes wherever the held ticket would:
// zeroed when it expires, when the handshake is given up or cleared, and
// not offered once a full handshake is forced.
func TestCookieRetryTicketIsZeroedWhenItCannotServe(t *testing.T) {
	cases := []struct {
		name string
		do   func(t *testing.T, p *Peer, now *time.Time)
	}{
		{"expired", func(t *testing.T, p *Peer, now *time.Time) {
			// A ticket that expires within the retry interval, so the
			// timers give nothing up meanwhile.
			p.mu.Lock()
			p.sent.expires = now.Add(time.Second)
			p.mu.Unlock()
			if next := p.NextDeadline(); next.After(now.Add(time.Second)) {
				t.Errorf("next deadline %v, after the kept ticket's expiry", next.Sub(*now))
			}
			*now = now.Add(time.Second)
			p.Due(*now)
		}},
		{"cleared", func(t *testing.T, p *Peer, now *time.Time) { p.Clear() }},
		{"forced full", func(t *testing.T, p *Peer, now *time.Time) { p.ForceFullHandshake() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := t0
			a, _, _, sent := cookieAnswered(t, &now)
			c.do(t, a.peer, &now)
			if sent == nil || sent.secret != ([32]byte{}) {
				t.Fatal("the ticket kept for the retry was not zeroed")
			}
			if msg, _, _ := a.peer.Initiate(now, "b"); msg[0] != handshake.MessageTypeInitiation {
				t.Fatalf("next handshake of type %d, want a full initiation", msg[0])
			}
		})
	}

	// Given up after the retries: nothing is left.
	now := t0
	a, b := ticketSides(t, &now)
	now = now.Add(2 * time.Minute)
	a.peer.WantHandshake(now)
	first, _, _ := a.peer.Initiate(now, "b")
	sent := a.peer.sent
	if err := a.peer.ConsumeCookieReply(cookieFor(t, b, first, now)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		now = now.Add(5 * time.Second)
		if a.peer.Due(now)&rekey.ActGiveUp != 0 {
			break
		}
	}
	if a.peer.Initiating() || a.peer.sent != nil || sent.secret != ([32]byte{}) {
		t.Fatal("giving up left the ticket kept for the retry")
	}
}

// The ticket's secret stays only while the resumption that carries it
// waits: zeroed once that resumption (here the retry a cookie reply
// brought) completes.
func TestCookieRetryTicketIsZeroedOnceResumed(t *testing.T) {
	now := t0
	a, b, _, _ := cookieAnswered(t, &now)
	retry, _, _ := a.peer.Initiate(now, "b")
	sent := a.peer.sent
	if sent == nil || sent.secret == ([32]byte{}) {
		t.Fatal("the pending resumption keeps no ticket for a retry")
	}
	if done := resume(t, a, b, retry, now); !done.Resumed {
		t.Fatal("not resumed")
	}
	if a.peer.sent != nil || sent.secret != ([32]byte{}) {
		t.Fatal("the ticket's secret outlived the resumption it served")
	}
}
