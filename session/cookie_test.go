package session

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"stunnel/handshake"
)

// cookieFor is the cookie reply b's responder makes, under load, for msg.
func cookieFor(t *testing.T, b *side, msg []byte, now time.Time) []byte {
	t.Helper()
	c := handshake.NewCookieChecker(b.host.PublicKey(), func() time.Time { return now }, nil)
	reply, err := c.CreateReply(msg, netip.MustParseAddrPort("198.18.0.1:51820"))
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// A cookie reply is taken only while an initiation of ours waits for its
// answer (docs/PROTOCOL.md section 8, SENT -> SENT). Once the handshake it
// answers completed, or was given up, a reply that still opens with that
// initiation's mac1 (a late duplicate's answer, or a forgery by anyone who
// saw the mac1 on the path) must not make the holder start a handshake.
func TestCookieReplyOnlyWhileInitiating(t *testing.T) {
	now := t0
	a, b := newSides(t, &now)
	msg, _, err := a.peer.Initiate(now, "198.18.0.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	reply := cookieFor(t, b, msg, now)
	a.complete(t, b.answer(t, msg, now), now)
	if err := a.peer.ConsumeCookieReply(reply); !errors.Is(err, handshake.ErrNoCookieWaiting) {
		t.Fatalf("a cookie reply after the handshake completed: %v, want ErrNoCookieWaiting", err)
	}
	if n := a.peer.Status(now).CookieReplies; n != 0 {
		t.Fatalf("%d cookie replies counted with no initiation waiting", n)
	}

	// While one waits, the same kind of reply is taken, once.
	now = now.Add(time.Minute)
	msg, _, err = a.peer.Initiate(now, "198.18.0.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	reply = cookieFor(t, b, msg, now)
	if err := a.peer.ConsumeCookieReply(reply); err != nil {
		t.Fatalf("a cookie reply to the pending initiation: %v", err)
	}
	if err := a.peer.ConsumeCookieReply(reply); err == nil {
		t.Fatal("the same cookie reply was taken twice")
	}

	// Given up: nothing waits any more.
	msg, _, err = a.peer.Initiate(now, "198.18.0.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	reply = cookieFor(t, b, msg, now)
	a.peer.Clear()
	if err := a.peer.ConsumeCookieReply(reply); !errors.Is(err, handshake.ErrNoCookieWaiting) {
		t.Fatalf("a cookie reply after the initiation was abandoned: %v, want ErrNoCookieWaiting", err)
	}
}
