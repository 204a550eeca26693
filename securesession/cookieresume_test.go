package securesession

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"stunnel/handshake"
)

// A server behind a responder under load (a stunnel daemon) answers the
// client's resumption with a cookie reply, before it opens anything. The
// client's retry with the cookie resumes with the same ticket, as the
// daemon's does (the rule lives in the shared session core), instead of
// falling back to a full handshake.
func TestResumptionAnsweredWithCookieResumesAgain(t *testing.T) {
	sv := newServer(t, "alice")
	bob := sv.session(t)
	alice := sv.client(t, "alice", bob)
	m5 := sv.resumption(t, alice, bob)
	ticket := func(m []byte) []byte { return m[6 : 6+int(binary.LittleEndian.Uint16(m[4:]))] }

	reply, err := handshake.NewCookieChecker(sv.bobKey.PublicKey(), sv.clock.Now, nil).
		CreateReply(m5, netip.MustParseAddrPort("198.18.0.1:51820"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.Unwrap(reply)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Send) != 1 || res.Send[0][0] != handshake.MessageTypeResumptionInitiation {
		t.Fatalf("after the cookie reply alice sends %d messages (first of type %d), want one resumption", len(res.Send), res.Send[0][0])
	}
	if !bytes.Equal(ticket(res.Send[0]), ticket(m5)) {
		t.Fatal("the retry carries another ticket")
	}
	deliver(t, bob, alice, res.Send)
	if total, resumed := alice.Handshakes(); total != 2 || resumed != 1 {
		t.Fatalf("alice: %d handshakes, %d resumed; want 1 full and 1 resumed", total, resumed)
	}
	mustUnwrap(t, alice, mustWrap(t, bob, "resumed"), "resumed")
}
