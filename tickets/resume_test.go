package tickets

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"stunnel/handshake"
)

func TestResumeKeysAgreeAndDiffer(t *testing.T) {
	w := newWorld(t)
	sc0, sg0, h := w.full(t)
	if sc0.ResumptionSecret != sg0.ResumptionSecret || sc0.ResumptionSecret == [32]byte{} {
		t.Fatal("full handshake: resumption secrets differ or are zero")
	}
	if sc0.ResumptionSecret == sc0.SendKey || sc0.ResumptionSecret == sc0.RecvKey {
		t.Fatal("resumption secret equals a data key")
	}
	prev := sc0
	for i := 0; i < 5; i++ {
		sc, sg, next, err := w.resume(t, h)
		if err != nil {
			t.Fatalf("resumption %d: %v", i, err)
		}
		if !sc.Resumed || !sg.Resumed || sg.PeerID != "client" || sc.PeerID != "gw" {
			t.Fatalf("resumed session: Resumed %v/%v, peer IDs %q/%q", sc.Resumed, sg.Resumed, sc.PeerID, sg.PeerID)
		}
		if sc.SendKey != sg.RecvKey || sc.RecvKey != sg.SendKey || sc.SessionID != sg.SessionID || sc.ResumptionSecret != sg.ResumptionSecret {
			t.Fatal("resumed session: the sides disagree")
		}
		if sc.SendKey == sc.RecvKey {
			t.Fatal("resumed session: both directions share a key")
		}
		for _, k := range [][32]byte{prev.SendKey, prev.RecvKey, prev.ResumptionSecret, prev.SessionID} {
			if k == sc.SendKey || k == sc.RecvKey || k == sc.ResumptionSecret || k == sc.SessionID {
				t.Fatal("resumed session repeats a value of the previous session")
			}
		}
		if sc.LocalIndex != sg.RemoteIndex || sc.RemoteIndex != sg.LocalIndex {
			t.Fatal("indices do not match")
		}
		if bytes.Equal(next.ticket[:offSealed], h.ticket[:offSealed]) {
			t.Fatal("two tickets share name and nonce: linkable")
		}
		prev, h = sc, next
	}
	prev.Zero()
	if prev.ResumptionSecret != [32]byte{} {
		t.Fatal("Session.Zero leaves the resumption secret")
	}
}

func TestSecondUseOfTicketRefused(t *testing.T) {
	w := newWorld(t)
	_, _, h := w.full(t)
	if _, _, _, err := w.resume(t, h); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := w.resume(t, h) // a fresh message 5 (new ephemeral, newer timestamp), same ticket
	wantErr(t, err, handshake.ErrTicketReused, "second resumption from one ticket")
	var pe *handshake.PeerError
	if !errors.As(err, &pe) || pe.PeerID != "client" {
		t.Fatalf("refusal does not name the ticket's peer: %v", err)
	}
	// Fallback: a full handshake succeeds.
	w.full(t)
}

func TestReplayedResumptionRefused(t *testing.T) {
	w := newWorld(t)
	_, _, h := w.full(t)
	w.clk.Advance(time.Second)
	_, msg := w.resumeMsg(t, h)
	if _, _, _, err := w.resp.ConsumeResumption(msg, 1, w.ring); err != nil {
		t.Fatal(err)
	}
	w.clk.Advance(time.Second)
	_, _, _, err := w.resp.ConsumeResumption(msg, 2, w.ring)
	wantErr(t, err, handshake.ErrReplay, "replayed message 5")
	// An older resumption message (stale timestamp) from a second ticket.
	_, _, h2 := w.full(t)
	_, old := w.resumeMsg(t, h2)
	w.full(t) // a newer initiation moves the peer's timestamp on
	_, _, _, err = w.resp.ConsumeResumption(old, 3, w.ring)
	wantErr(t, err, handshake.ErrStaleTimestamp, "stale message 5")
	// The stale message did not spend the ticket: a fresh message with it works.
	if _, _, _, err := w.resume(t, h2); err != nil {
		t.Fatalf("ticket refused after a stale message: %v", err)
	}
}

func TestTicketExpiredAndReauth(t *testing.T) {
	w := newWorld(t)
	_, _, h := w.full(t)
	// Tickets of a fresh in-memory key live until the key ends (15h): reauth is 24h.
	if h.life != 15*time.Hour {
		t.Fatalf("ticket lifetime %v, want 15h", h.life)
	}
	w.clk.Advance(h.life) // exactly at expiry (and key end)
	_, _, _, err := w.resume(t, h)
	wantErr(t, err, handshake.ErrTicketExpired, "ticket at its expiry")

	// reauth_after: a chain of resumptions never extends the last proof.
	w = newWorld(t)
	auth := w.clk.Now().Add(time.Second)
	_, _, h = w.full(t)
	for w.clk.Now().Before(auth.Add(20 * time.Hour)) {
		w.clk.Advance(time.Hour)
		var err error
		if _, _, h, err = w.resume(t, h); err != nil {
			t.Fatalf("resumption at %v: %v", w.clk.Now().Sub(auth), err)
		}
	}
	if got := h.life; got > auth.Add(24*time.Hour).Sub(w.clk.Now()) {
		t.Fatalf("ticket lives %v, past auth time + reauth_after", got)
	}
	// A shorter reauth_after (config reload) refuses the same ticket with ErrReauthRequired.
	w.ring.Reconfigure(0, 0, time.Hour)
	_, err = w.ring.OpenTicket(h.ticket)
	wantErr(t, err, handshake.ErrReauthRequired, "ticket past reauth_after")
	w.ring.Reconfigure(0, 0, 24*time.Hour)
	// Past auth + 24h no ticket is issued any more.
	w.clk.Advance(auth.Add(24*time.Hour + time.Second).Sub(w.clk.Now()))
	st := handshake.TicketState{PeerID: "client", AuthTime: auth}
	_, err = w.ring.Seal(&st)
	wantErr(t, err, handshake.ErrReauthRequired, "sealing past reauth_after")
	w.full(t) // the fallback: a full handshake succeeds and yields a fresh ticket
}

func TestPeerRemovedOrKeyChanged(t *testing.T) {
	w := newWorld(t)
	_, _, h := w.full(t)
	saved := w.gwPeers["client"]
	delete(w.gwPeers, "client")
	_, _, _, err := w.resume(t, h)
	wantErr(t, err, handshake.ErrUnknownPeer, "peer removed")

	other, _ := handshake.GeneratePrivateKey(nil)
	w.gwPeers["client"] = handshake.PeerInfo{PublicKey: other.PublicKey(), ID: "client"}
	_, _, _, err = w.resume(t, h)
	wantErr(t, err, handshake.ErrKeyMismatch, "peer's key changed")

	// The PSK changed on the responder only: the ticket names the old one
	// (without that, the Noise message would not decrypt either).
	w.gwPeers["client"] = handshake.PeerInfo{PublicKey: saved.PublicKey, ID: "client", PresharedKey: handshake.PresharedKey{1}}
	_, _, _, err = w.resume(t, h)
	wantErr(t, err, handshake.ErrPSKMismatch, "pair PSK changed")
	// None of these spent the ticket.
	w.gwPeers["client"] = saved
	if _, _, _, err := w.resume(t, h); err != nil {
		t.Fatalf("ticket after refusals: %v", err)
	}
}

// A pre-shared key rotated on both ends revokes the old one for
// resumptions too: a ticket issued over a session under the old PSK is
// refused, although the initiator now has the new PSK and mixes it into
// the resumption as the responder does (psk_r depends on the current PSK
// only, so it used to resume, and the chain of resumptions went on from a
// handshake under the revoked key). The fallback, a full handshake under
// the new PSK, brings a ticket that resumes.
func TestTicketOfRotatedPSKRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to handshake.PresharedKey
	}{
		{"none to a PSK", handshake.PresharedKey{}, handshake.PresharedKey{1}},
		{"a PSK to another", handshake.PresharedKey{1}, handshake.PresharedKey{2}},
		{"a PSK to none", handshake.PresharedKey{2}, handshake.PresharedKey{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.setPSK(tc.from)
			_, _, h := w.full(t)
			w.setPSK(tc.to)
			_, _, _, err := w.resume(t, h)
			wantErr(t, err, handshake.ErrPSKMismatch, "ticket issued under the old PSK")
			wantErr(t, err, handshake.ErrKeyMismatch, "ticket issued under the old PSK")
			_, _, h = w.full(t)
			if _, _, _, err := w.resume(t, h); err != nil {
				t.Fatalf("ticket issued under the new PSK: %v", err)
			}
		})
	}
}

func TestUnknownKeyAndExpiredKey(t *testing.T) {
	w := newWorld(t)
	_, _, h := w.full(t)
	other := NewRing(Options{Now: w.clk.Now})
	_, err := other.OpenTicket(h.ticket)
	wantErr(t, err, handshake.ErrTicketKeyUnknown, "ticket from another ring")

	name := w.ring.keys[0].NameHex()
	if err := w.ring.Retire(name); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = w.resume(t, h)
	wantErr(t, err, handshake.ErrTicketKeyUnknown, "ticket of a retired key")
	w.full(t) // fallback works and a new key is made
}

func TestEveryTamperedByteRefused(t *testing.T) {
	w := newWorld(t)
	_, _, h := w.full(t)
	for i := range h.ticket {
		bad := bytes.Clone(h.ticket)
		bad[i] ^= 0x01
		_, err := w.ring.OpenTicket(bad)
		switch {
		case i == 0:
			wantErr(t, err, handshake.ErrTicketInvalid, "tampered version byte")
		case i < offNonce:
			wantErr(t, err, handshake.ErrTicketKeyUnknown, "tampered key name")
		default:
			wantErr(t, err, handshake.ErrTicketInvalid, "tampered ticket byte")
		}
	}
	for _, n := range []int{0, 1, TicketSize - 1, TicketSize + 1} {
		bad := make([]byte, n)
		copy(bad, h.ticket)
		_, err := w.ring.OpenTicket(bad)
		wantErr(t, err, handshake.ErrTicketInvalid, "ticket of wrong length")
	}
	// Through the handshake: a flipped ticket byte in message 5 is refused
	// (mac1 recomputed, as an attacker can), and the genuine ticket still works.
	_, msg := w.resumeMsg(t, h)
	msg[6+100] ^= 0x80 // inside the sealed state
	w.gen.AddMACs(msg)
	_, _, _, err := w.resp.ConsumeResumption(msg, 9, w.ring)
	wantErr(t, err, handshake.ErrTicketInvalid, "message 5 with tampered ticket")
	if _, _, _, err := w.resume(t, h); err != nil {
		t.Fatal(err)
	}
	w.full(t)
}

// A message 5 whose ticket the full used-ticket record has forgotten is still
// refused when replayed: the record may forget (Ring.ConsumeTicket) because
// the responder's per-peer timestamp refuses the message itself.
func TestReplayAfterUsedRecordForgotItsTicket(t *testing.T) {
	w := newWorld(t)
	w.ring = NewRing(Options{Now: w.clk.Now, MaxUsed: 2})
	_, _, h := w.full(t)
	w.clk.Advance(time.Second)
	_, msg := w.resumeMsg(t, h)
	replay := bytes.Clone(msg)
	if _, _, st, err := w.resp.ConsumeResumption(msg, w.idx+1, w.ring); err != nil {
		t.Fatal(err)
	} else {
		st.Zero()
	}
	// Two more resumptions with later-expiring tickets fill the record; the
	// first ticket, expiring first, is forgotten.
	for range 2 {
		w.clk.Advance(time.Hour)
		_, _, h2 := w.full(t)
		if _, _, _, err := w.resume(t, h2); err != nil {
			t.Fatal(err)
		}
	}
	w.ring.mu.Lock()
	_, kept := w.ring.used[blake2s.Sum256(h.ticket)]
	w.ring.mu.Unlock()
	if kept {
		t.Fatal("test setup: the first ticket is still in the used record")
	}
	_, _, _, err := w.resp.ConsumeResumption(replay, w.idx+1, w.ring)
	wantErr(t, err, handshake.ErrStaleTimestamp, "replayed message 5 after its ticket left the used record")
}
