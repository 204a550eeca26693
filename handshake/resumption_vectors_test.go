package handshake

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
)

// Test vectors of docs/PROTOCOL.md section 10.8: message 5 built by the
// reference initiator (resumption_interop_test.go) from fixed inputs, message 6
// and the session from the real Responder with a fixed ephemeral key. The
// test fails if the code, these values or the page disagree.
var resumptionVectors = map[string]string{
	"message5":          "0501000010004444444444444444444444444444444438ab664bd86f77d7e66bdd9ae0792913a94fd8b33a1260027e4b46c1f4884c67167a7c1b748fda3cef0d5fbdddaaa816f379ef1bcf5ff2208e6e128cf6b30ab31e1a821bf51774e6dc27275ab0170472e100000000000000000000000000000000",
	"message6":          "0601000004030201219e4d800da968d2a5fcb009c784f4746c7138edb9ee4844b739e830b05cf42431b9bc9705e7681e280e1651e61e29c56c58881dcf49487a7759bff2c31be85c329bde85cf2300000000000000000000000000000000",
	"key_i2r":           "1fd7f92db7150e534591a1c0e20cc36068fb9b60b93012ec97c64457671f028b",
	"key_r2i":           "2bc0ff76dbf2d2b034bbe6b4a1c78865082415c87643d120b4df600975fc289d",
	"session_id":        "4afa4859372429a7a94e7b5d8c39ff79c86fb0d117a4f4249adefc6a91925875",
	"resumption_secret": "21b7c9b6d013e13d9493d94fea33dbcc78df2e53442fccc2b40979782c071ccb",
}

func fill32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestResumptionVectors(t *testing.T) {
	clk := newFakeClock()
	var rPriv PrivateKey
	copy(rPriv[:], fill32(0x11))
	iPub, _ := curve25519.X25519(fill32(0x22), curve25519.Basepoint)
	var iPubKey PublicKey
	copy(iPubKey[:], iPub)
	peers := peerMap{"initiator": {PublicKey: iPubKey}}
	cfg := &Config{PeerID: []byte("responder"), PrivateKey: rPriv, Peers: peers, Now: clk.Now,
		Cipher: PreferChaCha20Poly1305, Rand: bytes.NewReader(fill32(0x66))}
	resp := NewResponder(cfg)
	rPub := rPriv.PublicKey()
	var rs [32]byte
	copy(rs[:], fill32(0x33))
	ticket := bytes.Repeat([]byte{0x44}, 16)
	o := &fakeOpener{states: map[string]TicketState{string(ticket): {PeerID: "initiator", PeerStatic: iPubKey, ResumptionSecret: rs, ResponderStatic: rPriv.PublicKey()}}, used: map[string]bool{}}

	ePriv := fill32(0x55)
	ePub, _ := curve25519.X25519(ePriv, curve25519.Basepoint)
	pskR := refExpand(make([]byte, 32), rs[:], "stunnel v1 resumption psk")
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
	binary.LittleEndian.PutUint32(payload, 0x01020304)
	stamp := tai64nFromUnixNano(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	copy(payload[4:], stamp[:])
	payload[16] = 1
	msg = append(msg, ePub...)
	msg = append(msg, s.encryptAndHash(payload)...)
	mk := refHash([]byte("mac1----"), rPub[:])
	msg = append(msg, refMAC(mk[:], msg)...)
	msg = append(msg, make([]byte, 16)...)

	m6, sess, _, err := resp.ConsumeResumption(msg, 0x05060708, o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"message5":          hex.EncodeToString(msg),
		"message6":          hex.EncodeToString(m6),
		"key_i2r":           hex.EncodeToString(sess.RecvKey[:]),
		"key_r2i":           hex.EncodeToString(sess.SendKey[:]),
		"session_id":        hex.EncodeToString(sess.SessionID[:]),
		"resumption_secret": hex.EncodeToString(sess.ResumptionSecret[:]),
	}
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(doc)), "")
	for name, want := range resumptionVectors {
		if got[name] != want {
			t.Errorf("%s = %s, want %s", name, got[name], want)
		}
		if !strings.Contains(flat, want) {
			t.Errorf("docs/PROTOCOL.md lacks the %s vector", name)
		}
	}
}
