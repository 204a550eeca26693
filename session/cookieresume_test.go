package session

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/tickets"
)

// ticketSides is newSides where b issues tickets (on the fake clock) and
// a holds one after a full handshake.
func ticketSides(t *testing.T, now *time.Time) (a, b *side) {
	t.Helper()
	a, b = newSides(t, now)
	b.host.SetTickets(tickets.NewRing(tickets.Options{Now: func() time.Time { return *now }}), true, 0)
	a.host.SetTickets(nil, true, 0)
	msg, _, err := a.peer.Initiate(*now, "b")
	if err != nil {
		t.Fatal(err)
	}
	kp := a.complete(t, b.answer(t, msg, *now), *now)
	next := nextOf(b.peer)
	if promoted, _ := b.peer.Received(next, false, *now); !promoted {
		t.Fatal("b did not promote the confirmed key")
	}
	tm := b.peer.TicketFor(next)
	if tm == nil {
		t.Fatal("b issued no ticket")
	}
	if err := a.peer.ReceiveControl(tm, kp, *now); err != nil || a.peer.held == nil {
		t.Fatalf("a did not keep b's ticket: %v", err)
	}
	return a, b
}

// ticketOf is the ticket a message 5 carries (section 10.4).
func ticketOf(t *testing.T, msg []byte) []byte {
	t.Helper()
	if msg[0] != handshake.MessageTypeResumptionInitiation {
		t.Fatalf("message of type %d, want a resumption (5)", msg[0])
	}
	n := int(binary.LittleEndian.Uint16(msg[4:]))
	return msg[6 : 6+n]
}

// resume runs b's side of message 5 and a's of message 6.
func resume(t *testing.T, a, b *side, msg []byte, now time.Time) Completed {
	t.Helper()
	idx := b.reg.Reserve()
	resp, sess, st, err := b.host.ConsumeResumption(msg, idx)
	if err != nil {
		t.Fatalf("ConsumeResumption: %v", err)
	}
	if err := b.peer.AcceptResumed(sess, st, idx, now); err != nil {
		t.Fatal(err)
	}
	ridx, _ := handshake.PeekResumptionResponseReceiver(resp)
	done, err := a.peer.ConsumeResponse(ridx, resp, "b", now)
	if err != nil {
		t.Fatalf("ConsumeResponse: %v", err)
	}
	return done
}

// A responder under load answers a resumption with a cookie reply before
// it opens anything (docs/PROTOCOL.md section 8), so the ticket is not
// spent: the retry that carries the cookie resumes again with the same
// ticket (fresh ephemeral key) instead of falling back to a full
// handshake, which would cost the loaded responder several times more.
func TestCookieReplyToResumptionRetriesWithSameTicket(t *testing.T) {
	now := t0
	a, b := ticketSides(t, &now)
	now = now.Add(2 * time.Minute)

	first, _, err := a.peer.Initiate(now, "b")
	if err != nil {
		t.Fatal(err)
	}
	ticket := bytes.Clone(ticketOf(t, first))
	if err := a.peer.ConsumeCookieReply(cookieFor(t, b, first, now)); err != nil {
		t.Fatal(err)
	}
	retry, _, err := a.peer.Initiate(now, "b")
	if err != nil {
		t.Fatal(err)
	}
	if retry[0] != handshake.MessageTypeResumptionInitiation {
		t.Fatalf("the retry after a cookie reply is of type %d, want a resumption with the same ticket", retry[0])
	}
	if !bytes.Equal(ticketOf(t, retry), ticket) {
		t.Fatal("the retry carries another ticket")
	}
	eph := func(m []byte) []byte { return m[6+len(ticket) : 38+len(ticket)] }
	if bytes.Equal(eph(first), eph(retry)) {
		t.Fatal("the retry reuses the first message's ephemeral key")
	}
	if mac2 := retry[len(retry)-16:]; bytes.Equal(mac2, make([]byte, 16)) {
		t.Fatal("the retry carries no mac2")
	}
	done := resume(t, a, b, retry, now)
	if !done.Resumed || done.Keypair == nil {
		t.Fatalf("the retry did not resume: %+v", done)
	}
	if s := a.peer.Status(now); s.Handshakes != 2 || s.HandshakesResumed != 1 {
		t.Fatalf("a: %d handshakes, %d resumed; want 1 full and 1 resumed", s.Handshakes, s.HandshakesResumed)
	}
	if promoted, _ := b.peer.Received(nextOf(b.peer), false, now); !promoted {
		t.Fatal("b did not promote the resumed key")
	}
	if s := b.peer.Status(now); s.Handshakes != 2 || s.HandshakesResumed != 1 {
		t.Fatalf("b: %d handshakes, %d resumed; want 1 full and 1 resumed", s.Handshakes, s.HandshakesResumed)
	}
}

// A ticket is resent once. A cookie reply to the resend (an expired cookie,
// or a reply forged by anyone who saw the mac1) used to arm another resend,
// and each put the same ticket on the wire again, linking the messages
// that carry it: the next attempt is a full handshake instead.
func TestSecondCookieReplyBringsFullHandshake(t *testing.T) {
	now := t0
	a, b, first, _ := cookieAnswered(t, &now)
	retry, _, _ := a.peer.Initiate(now, "b")
	if !bytes.Equal(ticketOf(t, retry), ticketOf(t, first)) {
		t.Fatal("the resend carries another ticket")
	}
	sent := a.peer.sent
	if err := a.peer.ConsumeCookieReply(cookieFor(t, b, retry, now)); err != nil {
		t.Fatal(err)
	}
	third, _, err := a.peer.Initiate(now, "b")
	if err != nil {
		t.Fatal(err)
	}
	if third[0] != handshake.MessageTypeInitiation {
		t.Fatalf("after a cookie reply to the resend: a message of type %d, want a full initiation (1)", third[0])
	}
	if sent == nil || sent.secret != ([32]byte{}) || a.peer.sent != nil {
		t.Fatal("the resent ticket's secret outlived its last attempt")
	}
}

// The resend belongs to the retry the cookie reply starts at once. When the
// holder could not send it (no endpoint yet), the resend stayed armed and
// the timers' retry, 5 s later, resumed with the same ticket: section 10.5
// drops the ticket at the next retry, which is a full handshake.
func TestCookieResendDoesNotOutliveItsRetry(t *testing.T) {
	now := t0
	a, _, _, sent := cookieAnswered(t, &now)
	// The holder sends nothing now; the retry interval passes.
	now = now.Add(6 * time.Second)
	if a.peer.Due(now)&rekey.ActSendInitiation == 0 {
		t.Fatal("no retry due")
	}
	if sent == nil || sent.secret != ([32]byte{}) || a.peer.sent != nil {
		t.Fatal("the timers' retry left the unanswered resumption's ticket kept")
	}
	msg, _, err := a.peer.Initiate(now, "b")
	if err != nil {
		t.Fatal(err)
	}
	if msg[0] != handshake.MessageTypeInitiation {
		t.Fatalf("the timers' retry after an unsent cookie resend: a message of type %d, want a full initiation (1)", msg[0])
	}
}

// cookieAnswered starts a resumption on a (2 minutes after the tickets
// came) and takes b's cookie reply to it: the start of every cookie-resend
// test. sent is the ticket that resumption carries.
func cookieAnswered(t *testing.T, now *time.Time) (a, b *side, first []byte, sent *heldTicket) {
	t.Helper()
	a, b = ticketSides(t, now)
	*now = now.Add(2 * time.Minute)
	first, _, _ = a.peer.Initiate(*now, "b")
	sent = a.peer.sent
	if err := a.peer.ConsumeCookieReply(cookieFor(t, b, first, *now)); err != nil {
		t.Fatal(err)
	}
	return a, b, first, sent
}
