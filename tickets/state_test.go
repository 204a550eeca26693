package tickets

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"stunnel/handshake"
)

// sealOld seals st as a ticket of an older format, as stunnel sealed them
// before tickets named their responder: state version 2 (with the PSK
// tag, 244 bytes) or 1 (without, 212 bytes). The layout is version 3's
// without the fields that came later.
func sealOld(t testing.TB, k *Key, st *handshake.TicketState, version byte) []byte {
	t.Helper()
	var full [stateLen]byte
	if err := encodeState(&full, st); err != nil {
		t.Fatal(err)
	}
	plain := full[:offResponder]
	if version == 1 {
		plain = full[:offPSKTag]
	}
	plain[0] = version
	aead, err := chacha20poly1305.NewX(k.secret[:])
	if err != nil {
		t.Fatal(err)
	}
	tk := make([]byte, offSealed, offSealed+len(plain)+chacha20poly1305.Overhead)
	tk[0] = ticketVersion
	copy(tk[offName:], k.Name[:])
	if _, err := rand.Read(tk[offNonce:offSealed]); err != nil {
		t.Fatal(err)
	}
	return aead.Seal(tk, tk[offNonce:offSealed], plain, tk[:offNonce])
}

// A ticket (state version 3, 276 bytes) names the pre-shared key it was
// issued under and the responder that issued it.
func TestTicketNamesPSKAndResponder(t *testing.T) {
	w := newWorld(t)
	w.setPSK(handshake.PresharedKey{3})
	_, sg, h := w.full(t)
	if len(h.ticket) != TicketSize || TicketSize != 276 {
		t.Fatalf("ticket of %d bytes, want %d (docs/PROTOCOL.md 10.2: 276)", len(h.ticket), TicketSize)
	}
	st, err := w.ring.OpenTicket(h.ticket)
	if err != nil {
		t.Fatal(err)
	}
	psk := handshake.PresharedKey{3}
	if !st.HasPSKTag || st.PSKTag != psk.Tag() || st.PSKTag != sg.PSKTag {
		t.Fatal("the ticket does not name the pre-shared key of its session")
	}
	if st.ResponderStatic != w.gwPub {
		t.Fatal("the ticket does not name the responder that issued it")
	}
}

// Tickets sealed before they named their responder (versions 2 and 1,
// under a key the ring still has) would resume at any identity sharing
// the key: they are refused, cleanly (ErrTicketInvalid, saying why), and
// the initiator's next handshake, a full one, works and brings a ticket
// of the new format.
func TestOlderTicketsRefused(t *testing.T) {
	w := newWorld(t)
	sc, _, _ := w.full(t)
	now := w.clk.Now()
	old := handshake.TicketState{PeerID: "client", PeerStatic: w.gwPeers["client"].PublicKey,
		ResumptionSecret: sc.ResumptionSecret, Cipher: sc.Cipher, IssuedAt: now, AuthTime: now, Expiry: now.Add(time.Hour),
		PSKTag: sc.PSKTag, HasPSKTag: true}
	for _, c := range []struct {
		version byte
		size    int
	}{{2, 244}, {1, 212}} {
		tk := sealOld(t, w.ring.keys[0], &old, c.version)
		if len(tk) != c.size {
			t.Fatalf("a version %d ticket of %d bytes, want %d", c.version, len(tk), c.size)
		}
		_, err := w.ring.OpenTicket(tk)
		wantErr(t, err, handshake.ErrTicketInvalid, fmt.Sprintf("opening a version %d ticket", c.version))
		if !strings.Contains(err.Error(), "older version") {
			t.Fatalf("the refusal of a version %d ticket does not say why: %v", c.version, err)
		}
		_, _, _, err = w.resume(t, held{ticket: tk, secret: sc.ResumptionSecret})
		wantErr(t, err, handshake.ErrTicketInvalid, fmt.Sprintf("resuming with a version %d ticket", c.version))
		for _, bad := range [][]byte{append(bytes.Clone(tk), 0), tk[:len(tk)-1]} {
			if _, err := w.ring.OpenTicket(bad); !errors.Is(err, handshake.ErrTicketInvalid) {
				t.Fatalf("a ticket of %d bytes: %v, want ErrTicketInvalid", len(bad), err)
			}
		}
	}
	_, _, h := w.full(t)
	if _, _, _, err := w.resume(t, h); err != nil || len(h.ticket) != TicketSize {
		t.Fatalf("after the refusals, the full handshake's ticket (%d bytes) does not resume: %v", len(h.ticket), err)
	}
}

// decodeState takes only a version 3 state of its length.
func TestStateVersionMatchesLength(t *testing.T) {
	var v3 [stateLen]byte
	if err := encodeState(&v3, state(t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeState(v3[:]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version byte
		b       []byte
	}{{2, v3[:]}, {1, v3[:]}, {2, v3[:offResponder]}, {1, v3[:offPSKTag]}, {stateVersion, v3[:offResponder]}, {stateVersion, append(v3[:], 0)}} {
		b := bytes.Clone(tc.b)
		b[0] = tc.version
		if _, err := decodeState(b); !errors.Is(err, handshake.ErrTicketInvalid) {
			t.Fatalf("state version %d of %d bytes: %v, want ErrTicketInvalid", tc.version, len(b), err)
		}
	}
}
