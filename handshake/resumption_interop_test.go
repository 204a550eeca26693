package handshake

// The resumption half of interop_test.go: a reference initiator written from
// docs/PROTOCOL.md section 10 with x/crypto primitives only, against the real
// Responder. It also pins the documented resumption secret and ticket message.

import (
	"crypto/hmac"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
)

// refExpand is RFC 5869 HKDF with HMAC-BLAKE2s for L = 32.
func refExpand(salt, ikm []byte, info string) (out [32]byte) {
	prk := refHMAC(salt, ikm)
	copy(out[:], refHMAC(prk, append([]byte(info), 1)))
	return
}

func TestInteropReferenceResumption(t *testing.T) {
	clk, _, b := pair(t)
	iPriv := make([]byte, 32)
	iPriv[0] = 7
	iPub := refDH(t, iPriv, curve25519.Basepoint)
	var iPubKey PublicKey
	copy(iPubKey[:], iPub)
	pairPSK := PresharedKey{5}
	b.peers["ref"] = PeerInfo{PublicKey: iPubKey, PresharedKey: pairPSK}
	rs := [32]byte{1, 2, 3}
	ticket := []byte("an opaque ticket of any length")
	o := &fakeOpener{states: map[string]TicketState{string(ticket): {PeerID: "ref", PeerStatic: iPubKey, ResumptionSecret: rs, ResponderStatic: b.pub}}, used: map[string]bool{}}
	ePriv := make([]byte, 32)
	ePriv[0] = 9
	ePub := refDH(t, ePriv, curve25519.Basepoint)

	// Message 5, section 10.4.
	pskR := refExpand(pairPSK[:], rs[:], "stunnel v1 resumption psk")
	msg := []byte{5, 1, 0, 0}
	msg = binary.LittleEndian.AppendUint16(msg, uint16(len(ticket)))
	msg = append(msg, ticket...)
	s := &refState{}
	s.h = refHash([]byte("Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s"))
	s.ck = s.h
	s.mixHash(append([]byte("stunnel v1 resumption"), msg...))
	s.mixKeyAndHash(pskR[:])
	s.mixHash(ePub)
	s.mixKey(ePub)
	payload := make([]byte, 17)
	binary.LittleEndian.PutUint32(payload, 0xfeedf00d)
	clk.Advance(time.Second)
	now := clk.Now()
	binary.BigEndian.PutUint64(payload[4:], 0x400000000000000a+uint64(now.Unix()))
	binary.BigEndian.PutUint32(payload[12:], uint32(now.Nanosecond()))
	payload[16] = 1
	msg = append(msg, ePub...)
	msg = append(msg, s.encryptAndHash(payload)...)
	mk := refHash([]byte("mac1----"), b.pub[:])
	msg = append(msg, refMAC(mk[:], msg)...)
	msg = append(msg, make([]byte, 16)...)
	if len(msg) != 103+len(ticket) {
		t.Fatalf("reference message 5 is %d bytes", len(msg))
	}

	resp, sess, st, err := b.resp.ConsumeResumption(msg, 0x0a0b0c0d, o)
	if err != nil {
		t.Fatalf("responder refuses the reference resumption: %v", err)
	}
	if st.PeerID != "ref" || sess.PeerID != "ref" || !sess.Resumed {
		t.Fatal("session or ticket state names the wrong peer")
	}

	// Message 6, section 10.6.
	if len(resp) != 94 || resp[0] != 6 || resp[1] != 1 || binary.LittleEndian.Uint32(resp[4:]) != 0xfeedf00d {
		t.Fatalf("message 6 header/index: %x", resp[:8])
	}
	mk = refHash([]byte("mac1----"), iPub)
	if !hmac.Equal(refMAC(mk[:], resp[:62]), resp[62:78]) || !isZero(resp[78:]) {
		t.Fatal("message 6 mac1/mac2 not as documented")
	}
	fPub := resp[8:40]
	s.mixHash(fPub)
	s.mixKey(fPub)
	s.mixKey(refDH(t, ePriv, fPub))
	p6, ok := s.decryptAndHash(resp[40:62])
	if !ok {
		t.Fatal("reference initiator cannot decrypt message 6")
	}
	if binary.LittleEndian.Uint32(p6) != 0x0a0b0c0d || p6[4] != 1 {
		t.Fatalf("payload 6 = %x", p6)
	}
	i2r, r2i, sid := refSplitKeys(s, p6[4])
	if sess.RecvKey != i2r || sess.SendKey != r2i || sess.SessionID != sid {
		t.Fatal("resumed keys or session ID differ from the documented derivation")
	}
	// Section 10.1.
	k1, k2, _ := refHKDF(s.ck[:], nil)
	wantRS := refExpand(make([]byte, 32), append(k1[:], k2[:]...), "stunnel v1 resumption secret"+string(s.h[:]))
	if sess.ResumptionSecret != wantRS {
		t.Fatal("resumption secret differs from the documented derivation")
	}

	// Section 10.3: the new-ticket message.
	m := []byte{0x01, 0x01}
	m = binary.LittleEndian.AppendUint32(m, 3600)
	m = binary.LittleEndian.AppendUint16(m, uint16(len(ticket)))
	m = append(m, ticket...)
	got, life, err := ParseTicketMessage(m)
	if err != nil || string(got) != string(ticket) || life != time.Hour {
		t.Fatalf("documented ticket message: %v", err)
	}
}
