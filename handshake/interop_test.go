package handshake

// An independent implementation of docs/PROTOCOL.md, written from the page
// with only x/crypto primitives (no flynn/noise, none of this package's
// internals), run against the real Initiation and Responder. If the page and the code disagree, these fail.

import (
	"crypto/hmac"
	"encoding/binary"
	"hash"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
)

type refState struct {
	ck, h, k [32]byte
	n        uint64
}

func refHash(parts ...[]byte) [32]byte {
	h, _ := blake2s.New256(nil)
	for _, p := range parts {
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func refHMAC(key, data []byte) []byte {
	m := hmac.New(func() hash.Hash { h, _ := blake2s.New256(nil); return h }, key)
	m.Write(data)
	return m.Sum(nil)
}

func refHKDF(ck, ikm []byte) (o1, o2, o3 [32]byte) {
	t := refHMAC(ck, ikm)
	copy(o1[:], refHMAC(t, []byte{1}))
	copy(o2[:], refHMAC(t, append(o1[:], 2)))
	copy(o3[:], refHMAC(t, append(o2[:], 3)))
	return
}

func (s *refState) mixHash(x []byte) { s.h = refHash(s.h[:], x) }
func (s *refState) mixKey(x []byte)  { s.ck, s.k, _ = refHKDF(s.ck[:], x); s.n = 0 }
func (s *refState) mixKeyAndHash(x []byte) {
	var t [32]byte
	s.ck, t, s.k = refHKDF(s.ck[:], x)
	s.mixHash(t[:])
	s.n = 0
}

func refNonce(n uint64) []byte {
	nonce := make([]byte, 12)
	binary.LittleEndian.PutUint64(nonce[4:], n)
	return nonce
}

func (s *refState) encryptAndHash(p []byte) []byte {
	a, _ := chacha20poly1305.New(s.k[:])
	c := a.Seal(nil, refNonce(s.n), p, s.h[:])
	s.n++
	s.mixHash(c)
	return c
}

func (s *refState) decryptAndHash(c []byte) ([]byte, bool) {
	a, _ := chacha20poly1305.New(s.k[:])
	p, err := a.Open(nil, refNonce(s.n), c, s.h[:])
	if err != nil {
		return nil, false
	}
	s.n++
	s.mixHash(c)
	return p, true
}

func refInit(responderPub []byte) *refState {
	s := &refState{}
	s.h = refHash([]byte("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"))
	s.ck = s.h
	s.mixHash([]byte("stunnel v1"))
	s.mixHash(responderPub)
	return s
}

func refDH(t *testing.T, priv, pub []byte) []byte {
	out, err := curve25519.X25519(priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func refMAC(key, data []byte) []byte {
	h, _ := blake2s.New128(key)
	h.Write(data)
	return h.Sum(nil)
}

// refSplitKeys derives the data keys and session ID as section 4.5 says.
func refSplitKeys(s *refState, c byte) (i2r, r2i, sid [32]byte) {
	k1, k2, _ := refHKDF(s.ck[:], nil)
	expand := func(k [32]byte, label string) (out [32]byte) {
		prk := refHMAC(make([]byte, 32), k[:])
		copy(out[:], refHMAC(prk, append(append([]byte(label), c), 1)))
		return
	}
	return expand(k1, "stunnel v1 i2r"), expand(k2, "stunnel v1 r2i"), refHash([]byte("stunnel session id"), s.h[:])
}

func TestInteropReferenceInitiator(t *testing.T) {
	clk, a, b := pair(t)
	_ = a
	iPriv := make([]byte, 32)
	iPriv[0] = 7
	iPub := refDH(t, iPriv, curve25519.Basepoint)
	var iPubKey PublicKey
	copy(iPubKey[:], iPub)
	b.peers["ref"] = PeerInfo{PublicKey: iPubKey}
	ePriv := make([]byte, 32)
	ePriv[0] = 9
	ePub := refDH(t, ePriv, curve25519.Basepoint)

	// Message 1, section 4.2.
	s := refInit(b.pub[:])
	s.mixHash(ePub)
	s.mixKey(ePub)
	s.mixKey(refDH(t, ePriv, b.pub[:]))
	encStatic := s.encryptAndHash(iPub)
	s.mixKey(refDH(t, iPriv, b.pub[:]))
	payload := make([]byte, 82)
	binary.LittleEndian.PutUint32(payload[0:], 0xdeadbeef)
	now := clk.Now()
	binary.BigEndian.PutUint64(payload[4:], 0x400000000000000a+uint64(now.Unix()))
	binary.BigEndian.PutUint32(payload[12:], uint32(now.Nanosecond()))
	payload[16] = 1 // ChaCha20-Poly1305 only
	payload[17] = 3
	copy(payload[18:], "ref")
	encPayload := s.encryptAndHash(payload)
	msg := append([]byte{1, 1, 0, 0}, ePub...)
	msg = append(msg, encStatic...)
	msg = append(msg, encPayload...)
	mk := refHash([]byte("mac1----"), b.pub[:])
	msg = append(msg, refMAC(mk[:], msg)...)
	msg = append(msg, make([]byte, 16)...)
	if len(msg) != 214 {
		t.Fatalf("reference message 1 is %d bytes", len(msg))
	}

	resp, sess, err := b.resp.ConsumeInitiation(msg, 0x01020304)
	if err != nil {
		t.Fatalf("responder refuses the reference initiation: %v", err)
	}

	// Message 2, section 4.3.
	if len(resp) != 94 || resp[0] != 2 || resp[1] != 1 || binary.LittleEndian.Uint32(resp[4:]) != 0xdeadbeef {
		t.Fatalf("response header/index: %x", resp[:8])
	}
	mk = refHash([]byte("mac1----"), iPub)
	if !hmac.Equal(refMAC(mk[:], resp[:62]), resp[62:78]) || !isZero(resp[78:]) {
		t.Fatal("response mac1/mac2 not as documented")
	}
	fPub := resp[8:40]
	s.mixHash(fPub)
	s.mixKey(fPub)
	s.mixKey(refDH(t, ePriv, fPub))
	s.mixKey(refDH(t, iPriv, fPub))
	s.mixKeyAndHash(make([]byte, 32))
	p2, ok := s.decryptAndHash(resp[40:62])
	if !ok {
		t.Fatal("reference initiator cannot decrypt message 2")
	}
	if binary.LittleEndian.Uint32(p2) != 0x01020304 || p2[4] != 1 || p2[5]&1 == 0 {
		t.Fatalf("payload 2 = %x", p2)
	}
	i2r, r2i, sid := refSplitKeys(s, p2[4])
	if sess.RecvKey != i2r || sess.SendKey != r2i || sess.SessionID != sid {
		t.Fatal("keys or session ID differ from the documented derivation")
	}

	// A data packet as section 5 describes opens with the responder's key.
	pkt := []byte{4, 1, 0, 0}
	pkt = binary.LittleEndian.AppendUint32(pkt, sess.LocalIndex)
	pkt = binary.LittleEndian.AppendUint64(pkt, 5)
	aead, _ := chacha20poly1305.New(i2r[:])
	pkt = aead.Seal(pkt, refNonce(5), []byte("ip packet"), nil)
	open, _ := NewAEAD(sess.Cipher, &sess.RecvKey)
	var nonce [12]byte
	copy(nonce[4:], pkt[DataOffCounter:DataOffPayload])
	if pt, err := open.Open(nil, nonce[:], pkt[MessageDataHeaderLen:], nil); err != nil || string(pt) != "ip packet" {
		t.Fatalf("documented data packet does not open: %v", err)
	}
}

func TestInteropReferenceResponder(t *testing.T) {
	clk, a, b := pair(t)
	psk := PresharedKey{42}
	clk.Advance(time.Second)
	in, err := NewInitiation(a.cfg, PeerInfo{PublicKey: b.pub, PresharedKey: psk}, 0x55)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	NewCookieGenerator(b.pub, clk.Now).AddMACs(msg)
	rPriv := b.cfg.PrivateKey[:]
	mk := refHash([]byte("mac1----"), b.pub[:])
	if !hmac.Equal(refMAC(mk[:], msg[:182]), msg[182:198]) {
		t.Fatal("mac1 not as documented")
	}

	s := refInit(b.pub[:])
	ePub := msg[4:36]
	s.mixHash(ePub)
	s.mixKey(ePub)
	s.mixKey(refDH(t, rPriv, ePub))
	iPub, ok := s.decryptAndHash(msg[36:84])
	if !ok || string(iPub) != string(a.pub[:]) {
		t.Fatal("reference responder cannot decrypt the static key")
	}
	s.mixKey(refDH(t, rPriv, iPub))
	p1, ok := s.decryptAndHash(msg[84:182])
	if !ok {
		t.Fatal("reference responder cannot decrypt payload 1")
	}
	if binary.LittleEndian.Uint32(p1) != 0x55 || p1[17] != 6 || string(p1[18:24]) != "site-a" || !isZero(p1[24:]) {
		t.Fatalf("payload 1 = %x", p1)
	}
	stamp := time.Unix(int64(binary.BigEndian.Uint64(p1[4:])-0x400000000000000a), int64(binary.BigEndian.Uint32(p1[12:])))
	// Stamps only grow process-wide, so other tests may have pushed it ahead.
	if stamp.Before(clk.Now()) {
		t.Fatalf("timestamp %v, clock %v", stamp, clk.Now())
	}

	fPriv := make([]byte, 32)
	fPriv[0] = 11
	fPub := refDH(t, fPriv, curve25519.Basepoint)
	s.mixHash(fPub)
	s.mixKey(fPub)
	s.mixKey(refDH(t, fPriv, ePub))
	s.mixKey(refDH(t, fPriv, iPub))
	s.mixKeyAndHash(psk[:])
	p2 := binary.LittleEndian.AppendUint32(nil, 0x66)
	p2 = append(p2, 1, 1)
	enc := s.encryptAndHash(p2)
	resp := []byte{2, 1, 0, 0}
	resp = binary.LittleEndian.AppendUint32(resp, 0x55)
	resp = append(append(resp, fPub...), enc...)
	mk = refHash([]byte("mac1----"), iPub)
	resp = append(resp, refMAC(mk[:], resp)...)
	resp = append(resp, make([]byte, 16)...)

	sess, err := in.ConsumeResponse(resp)
	if err != nil {
		t.Fatalf("initiator refuses the reference response: %v", err)
	}
	i2r, r2i, sid := refSplitKeys(s, 1)
	if sess.SendKey != i2r || sess.RecvKey != r2i || sess.SessionID != sid || sess.RemoteIndex != 0x66 {
		t.Fatal("initiator's session differs from the documented derivation")
	}

	// Cookie reply, section 6: the reference responder seals a cookie the initiator accepts.
	gen := NewCookieGenerator(b.pub, clk.Now)
	gen.AddMACs(msg)
	ck := refHash([]byte("cookie--"), b.pub[:])
	x, _ := chacha20poly1305.NewX(ck[:])
	nonce := make([]byte, 24)
	nonce[0] = 1
	cookie := []byte("0123456789abcdef")
	reply := append([]byte{3, 1, 0, 0}, nonce...)
	reply = x.Seal(reply, nonce, cookie, msg[182:198])
	if err := gen.ConsumeReply(reply); err != nil {
		t.Fatalf("documented cookie reply refused: %v", err)
	}
	gen.AddMACs(msg)
	if !hmac.Equal(refMAC(cookie, msg[:198]), msg[198:]) {
		t.Fatal("mac2 not as documented")
	}
}
