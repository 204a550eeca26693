//go:build cgo

package pkcs11key

import (
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/session"
	"stunnel/tickets"
)

// A resumed rekey costs no token operation on either side: the session core
// resumes with the ticket and one fresh ephemeral exchange, and the token
// key is used only for the full handshake before it.
func TestResumedRekeyNeedsNoTokenOperation(t *testing.T) {
	_, _, k := newTokenKey(t)
	memPriv, _ := handshake.GeneratePrivateKey(nil)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tokHost := session.NewHost(&handshake.Config{PeerID: []byte("gw"), Static: k, Now: clock,
		Peers: peers{"laptop": {PublicKey: memPriv.PublicKey(), ID: "laptop"}}}, rekey.DefaultPolicy())
	tokHost.SetTickets(tickets.NewRing(tickets.Options{Now: clock}), true, 24*time.Hour)
	memHost := session.NewHost(&handshake.Config{PeerID: []byte("laptop"), PrivateKey: memPriv, Now: clock,
		Peers: peers{"gw": {PublicKey: k.Public(), ID: "gw"}}}, rekey.DefaultPolicy())
	memHost.SetTickets(nil, true, 24*time.Hour) // issues none, resumes with the ones it gets
	regT, regM := session.NewMapRegistry(), session.NewMapRegistry()
	gw := tokHost.NewPeer(session.PeerConfig{ID: "laptop", PublicKey: memPriv.PublicKey()}, regT)
	laptop := memHost.NewPeer(session.PeerConfig{ID: "gw", PublicKey: k.Public()}, regM)

	handshakeOnce := func(wantResumed bool) {
		t.Helper()
		msg, _, err := laptop.Initiate(now, "gw")
		if err != nil {
			t.Fatal(err)
		}
		idx := regT.Reserve()
		var resp []byte
		var sess *handshake.Session
		if wantResumed {
			var st *handshake.TicketState
			resp, sess, st, err = tokHost.ConsumeResumption(msg, idx)
			if err == nil {
				err = gw.AcceptResumed(sess, st, idx, now)
			}
		} else {
			resp, sess, err = tokHost.ConsumeInitiation(msg, idx)
			if err == nil {
				err = gw.Accept(sess, idx, now)
			}
		}
		if err != nil {
			t.Fatalf("responder (resumed=%v): %v", wantResumed, err)
		}
		ridx, _ := handshake.PeekResponseReceiver(resp)
		if wantResumed {
			ridx, _ = handshake.PeekResumptionResponseReceiver(resp)
		}
		done, err := laptop.ConsumeResponse(ridx, resp, "gw", now)
		if err != nil || done.Resumed != wantResumed {
			t.Fatalf("initiator: resumed=%v, %v", done.Resumed, err)
		}
		_, _, next := gw.Slots()
		if promoted, _ := gw.Received(next, false, now); !promoted {
			t.Fatal("the responder did not promote the confirmed key")
		}
		ticket := gw.TicketFor(next)
		if ticket == nil {
			t.Fatal("no ticket issued")
		}
		if err := laptop.ReceiveControl(ticket, done.Keypair, now); err != nil {
			t.Fatal(err)
		}
	}
	before := k.Ops()
	handshakeOnce(false)
	if n := k.Ops() - before; n != 2 {
		t.Fatalf("a full handshake took %d token operations, want 2", n)
	}
	for range 3 {
		now = now.Add(2 * time.Minute)
		before = k.Ops()
		handshakeOnce(true)
		if n := k.Ops() - before; n != 0 {
			t.Fatalf("a resumed rekey took %d token operations, want 0", n)
		}
	}
	t.Logf("token operations: full handshake 2 (responder side), resumed rekey 0")
}
