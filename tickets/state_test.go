package tickets

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"stunnel/handshake"
)

// sealV1 seals st as a ticket with a version 1 state (no PSK tag), as
// stunnel sealed them before tickets named the pre-shared key.
func sealV1(t testing.TB, k *Key, st *handshake.TicketState) []byte {
	t.Helper()
	var plain [stateLenV1]byte
	plain[0] = stateVersionV1
	plain[1] = byte(st.Cipher)
	binary.LittleEndian.PutUint64(plain[2:], uint64(st.IssuedAt.UnixNano()))
	binary.LittleEndian.PutUint64(plain[10:], uint64(st.AuthTime.UnixNano()))
	binary.LittleEndian.PutUint64(plain[18:], uint64(st.Expiry.UnixNano()))
	copy(plain[26:58], st.PeerStatic[:])
	copy(plain[58:90], st.ResumptionSecret[:])
	plain[90] = byte(len(st.PeerID))
	copy(plain[91:], st.PeerID)
	aead, err := chacha20poly1305.NewX(k.secret[:])
	if err != nil {
		t.Fatal(err)
	}
	tk := make([]byte, offSealed, ticketSizeV1)
	tk[0] = ticketVersion
	copy(tk[offName:], k.Name[:])
	if _, err := rand.Read(tk[offNonce:offSealed]); err != nil {
		t.Fatal(err)
	}
	return aead.Seal(tk, tk[offNonce:offSealed], plain[:], tk[:offNonce])
}

// A ticket names the pre-shared key it was issued under (state version
// 2); one sealed before tickets did (version 1, 212 bytes) still opens,
// without a tag, and resumes: an upgrade, or a gateway group halfway
// through one, keeps resuming (such a ticket lives at most its key's
// life), at the price of the PSK check for that ticket.
func TestTicketNamesPSKAndVersion1StillResumes(t *testing.T) {
	w := newWorld(t)
	w.setPSK(handshake.PresharedKey{3})
	sc, sg, h := w.full(t)
	if len(h.ticket) != TicketSize || TicketSize != 244 || ticketSizeV1 != 212 {
		t.Fatalf("ticket of %d bytes, want %d (docs/PROTOCOL.md 10.2: 244)", len(h.ticket), TicketSize)
	}
	st, err := w.ring.OpenTicket(h.ticket)
	if err != nil {
		t.Fatal(err)
	}
	psk := handshake.PresharedKey{3}
	if !st.HasPSKTag || st.PSKTag != psk.Tag() || st.PSKTag != sg.PSKTag {
		t.Fatal("the ticket does not name the pre-shared key of its session")
	}

	now := w.clk.Now()
	old := handshake.TicketState{PeerID: "client", PeerStatic: w.gwPeers["client"].PublicKey,
		ResumptionSecret: sc.ResumptionSecret, Cipher: sc.Cipher, IssuedAt: now, AuthTime: now, Expiry: now.Add(time.Hour)}
	v1 := sealV1(t, w.ring.keys[0], &old)
	st, err = w.ring.OpenTicket(v1)
	if err != nil {
		t.Fatalf("a version 1 ticket: %v", err)
	}
	if st.HasPSKTag || st.PeerID != "client" || st.ResumptionSecret != sc.ResumptionSecret || !st.Expiry.Equal(old.Expiry) {
		t.Fatal("a version 1 ticket opened wrong")
	}
	_, _, next, err := w.resume(t, held{ticket: v1, secret: sc.ResumptionSecret})
	if err != nil {
		t.Fatalf("resumption with a version 1 ticket: %v", err)
	}
	if len(next.ticket) != TicketSize {
		t.Fatal("the ticket issued after a version 1 one is not of version 2")
	}

	// Only those two lengths open.
	for _, bad := range [][]byte{append(bytes.Clone(v1), 0), v1[:len(v1)-1]} {
		if _, err := w.ring.OpenTicket(bad); err == nil {
			t.Fatalf("a ticket of %d bytes opened", len(bad))
		}
	}
}

// decodeState takes a state only when its version matches its length.
func TestStateVersionMatchesLength(t *testing.T) {
	var v2 [stateLen]byte
	if err := encodeState(&v2, state(t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeState(v2[:]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version byte
		b       []byte
	}{{stateVersionV1, v2[:]}, {stateVersion, v2[:stateLenV1]}, {stateVersionV1, v2[:stateLenV1+1]}} {
		b := bytes.Clone(tc.b)
		b[0] = tc.version
		if _, err := decodeState(b); err == nil {
			t.Fatalf("state version %d of %d bytes decoded", tc.version, len(b))
		}
	}
}
