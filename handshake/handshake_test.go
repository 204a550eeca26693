package handshake

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
)

func pair(t testing.TB) (*fakeclock.Clock, *host, *host) {
	clk := newFakeClock()
	a, b := newHost(t, "site-a", clk), newHost(t, "site-b", clk)
	a.know(b)
	b.know(a)
	return clk, a, b
}

func TestHandshakeKeysAgree(t *testing.T) {
	clk, a, b := pair(t)
	sa, sb := handshake(t, clk, a, b)
	if sa.SendKey != sb.RecvKey || sa.RecvKey != sb.SendKey {
		t.Fatal("the two sides derived different keys")
	}
	if sa.SendKey == sa.RecvKey {
		t.Fatal("initiator-to-responder key equals responder-to-initiator key")
	}
	if sa.SendKey == ([32]byte{}) || sa.RecvKey == ([32]byte{}) {
		t.Fatal("zero key")
	}
	if sa.SessionID != sb.SessionID || sa.SessionID == ([32]byte{}) {
		t.Fatal("session IDs differ or are zero")
	}
	if !sa.Initiator || sb.Initiator {
		t.Fatal("Initiator flags wrong")
	}
	if sa.PeerID != "site-b" || sb.PeerID != "site-a" {
		t.Fatalf("peer IDs %q %q", sa.PeerID, sb.PeerID)
	}
	if sa.LocalIndex != sb.RemoteIndex || sb.LocalIndex != sa.RemoteIndex || sa.LocalIndex == sb.LocalIndex {
		t.Fatalf("indices: a %x/%x b %x/%x", sa.LocalIndex, sa.RemoteIndex, sb.LocalIndex, sb.RemoteIndex)
	}
	if sa.Cipher != sb.Cipher || sa.Cipher == CipherNone {
		t.Fatalf("ciphers %v %v", sa.Cipher, sb.Cipher)
	}
	// The keys work as data-plane keys in both directions, and only in the right one.
	seal, _ := NewAEAD(sa.Cipher, &sa.SendKey)
	open, _ := NewAEAD(sb.Cipher, &sb.RecvKey)
	wrong, _ := NewAEAD(sb.Cipher, &sb.SendKey)
	nonce := make([]byte, 12)
	ct := seal.Seal(nil, nonce, []byte("hello"), nil)
	if pt, err := open.Open(nil, nonce, ct, nil); err != nil || string(pt) != "hello" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := wrong.Open(nil, nonce, ct, nil); err == nil {
		t.Fatal("packet opened with the other direction's key")
	}
}

func TestEveryHandshakeFresh(t *testing.T) {
	clk, a, b := pair(t)
	seen := map[[32]byte]bool{}
	for i := 0; i < 5; i++ {
		sa, sb := handshake(t, clk, a, b)
		for _, k := range [][32]byte{sa.SendKey, sa.RecvKey, sa.SessionID} {
			if seen[k] {
				t.Fatalf("handshake %d repeated a key or session ID", i)
			}
			seen[k] = true
		}
		_ = sb
	}
	// Either side may initiate.
	sb, sa := handshake(t, clk, b, a)
	if sb.SendKey != sa.RecvKey || !sb.Initiator {
		t.Fatal("reverse handshake disagrees")
	}
}

func TestSessionZero(t *testing.T) {
	clk, a, b := pair(t)
	sa, _ := handshake(t, clk, a, b)
	sa.Zero()
	if sa.SendKey != ([32]byte{}) || sa.RecvKey != ([32]byte{}) {
		t.Fatal("Zero left key material")
	}
	if _, err := NewAEAD(CipherNone, &sa.SendKey); err == nil {
		t.Fatal("NewAEAD accepted CipherNone")
	}
}

func TestPresharedKey(t *testing.T) {
	clk, a, b := pair(t)
	psk := PresharedKey{1, 2, 3}
	b.peers["site-a"] = PeerInfo{PublicKey: a.pub, PresharedKey: psk}
	clk.Advance(time.Second)
	in, err := NewInitiation(a.cfg, PeerInfo{PublicKey: b.pub, PresharedKey: psk}, 1)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	NewCookieGenerator(b.pub, clk.Now).AddMACs(msg)
	resp, sb, err := b.resp.ConsumeInitiation(msg, 2)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := in.ConsumeResponse(resp)
	if err != nil || sa.SendKey != sb.RecvKey {
		t.Fatalf("with matching PSKs: %v", err)
	}
	// Without the PSK the initiator cannot authenticate message 2.
	clk.Advance(time.Second)
	in, msg = a.initiate(t, b, 3)
	resp, _, err = b.resp.ConsumeInitiation(msg, 4)
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.ConsumeResponse(resp)
	wantErr(t, err, ErrDecrypt, "PSK mismatch")
}

// A finished or abandoned initiation keeps no copy of the pre-shared key:
// the peer's own copy is zeroed when it is removed, and a copy left in an
// old Initiation would outlive that.
func TestInitiationZeroesItsPSKCopy(t *testing.T) {
	clk, a, b := pair(t)
	psk := PresharedKey{1, 2, 3}
	b.peers["site-a"] = PeerInfo{PublicKey: a.pub, PresharedKey: psk}
	for _, complete := range []bool{true, false} {
		clk.Advance(time.Second)
		in, err := NewInitiation(a.cfg, PeerInfo{PublicKey: b.pub, PresharedKey: psk}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if complete {
			msg := in.Message()
			NewCookieGenerator(b.pub, clk.Now).AddMACs(msg)
			resp, _, err := b.resp.ConsumeInitiation(msg, 2)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := in.ConsumeResponse(resp); err != nil {
				t.Fatal(err)
			}
		} else {
			in.Zero()
		}
		if !in.peer.PresharedKey.IsZero() {
			t.Fatalf("completed=%v: the initiation still holds the pre-shared key", complete)
		}
	}
}

func TestUnknownPeer(t *testing.T) {
	clk, a, b := pair(t)
	delete(b.peers, "site-a")
	clk.Advance(time.Second)
	_, msg := a.initiate(t, b, 1)
	_, _, err := b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrUnknownPeer, "unknown peer")
	var pe *PeerError
	if !errors.As(err, &pe) || pe.PeerID != "site-a" {
		t.Fatalf("refusal does not name the claimed ID: %v", err)
	}
}

func TestNoPeersConfigured(t *testing.T) {
	clk, a, b := pair(t)
	b.cfg.Peers = nil
	clk.Advance(time.Second)
	_, msg := a.initiate(t, b, 1)
	_, _, err := b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrUnknownPeer, "no PeerLookup")
}

func TestKnownIDWrongKey(t *testing.T) {
	clk, a, b := pair(t)
	// mallory claims to be site-a with her own key.
	m := newHost(t, "site-a", clk)
	clk.Advance(time.Second)
	_, msg := m.initiate(t, b, 1)
	_, _, err := b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrKeyMismatch, "known ID, other key")
	if !strings.Contains(err.Error(), `"site-a"`) {
		t.Fatalf("error does not name the claimed ID: %v", err)
	}
	_ = a
}

func TestWrongResponderKey(t *testing.T) {
	clk, a, b := pair(t)
	c := newHost(t, "site-c", clk)
	clk.Advance(time.Second)
	// a believes b's key is c's: mac1 is keyed by the wrong key, so b drops it cheaply.
	in, err := NewInitiation(a.cfg, PeerInfo{PublicKey: c.pub}, 1)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	NewCookieGenerator(c.pub, clk.Now).AddMACs(msg)
	if b.checker.CheckMAC1(msg) {
		t.Fatal("CheckMAC1 accepts a message keyed for someone else")
	}
	_, _, err = b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrBadMAC1, "wrong responder key")
	// Even with mac1 forged for b's key, Noise cannot decrypt it.
	fixMAC1(msg, b.pub)
	_, _, err = b.resp.ConsumeInitiation(msg, 2)
	wantErr(t, err, ErrDecrypt, "wrong responder key, mac1 forged")
}

func TestFlippedByteInitiation(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	_, orig := a.initiate(t, b, 1)
	for i := 0; i < InitiationSize; i++ {
		msg := bytes.Clone(orig)
		msg[i] ^= 0x01
		switch {
		case i < HeaderLen:
			_, _, err := b.resp.ConsumeInitiation(msg, 2)
			wantErr(t, err, ErrMalformed, "flipped header byte")
		case i < initOffMAC2:
			_, _, err := b.resp.ConsumeInitiation(msg, 2)
			wantErr(t, err, ErrBadMAC1, "flipped byte before mac2")
			if b.checker.CheckMAC1(msg) {
				t.Fatalf("byte %d: CheckMAC1 accepts", i)
			}
		default:
			// mac2 is not covered by Noise or mac1: it is read only under
			// load, by CheckMAC2, where it must match a cookie (a flipped mac2
			// with a real cookie: TestCookieRoundTrip). Off load it is ignored.
			if b.checker.CheckMAC2(msg, addrA) {
				t.Fatalf("byte %d: CheckMAC2 accepts a flipped mac2", i)
			}
		}
		// With mac1 recomputed (an attacker who knows b's public key), Noise
		// itself must reject every changed byte of its part.
		if i >= initOffEphemeral && i < initOffMAC1 {
			fixMAC1(msg, b.pub)
			_, _, err := b.resp.ConsumeInitiation(msg, 2)
			wantErr(t, err, ErrDecrypt, "flipped Noise byte with valid mac1")
		}
	}
	// The genuine message still works after all that.
	if _, _, err := b.resp.ConsumeInitiation(orig, 2); err != nil {
		t.Fatal(err)
	}
}

func TestFlippedByteResponse(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	in, msg := a.initiate(t, b, 0x0a0b0c0d)
	orig, _, err := b.resp.ConsumeInitiation(msg, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < ResponseSize; i++ {
		msg := bytes.Clone(orig)
		msg[i] ^= 0x80
		_, err := in.ConsumeResponse(msg)
		switch {
		case i < HeaderLen:
			wantErr(t, err, ErrMalformed, "flipped header byte")
		case i < respOffEphemeral:
			wantErr(t, err, ErrWrongReceiver, "flipped receiver index")
		case i < respOffMAC2:
			wantErr(t, err, ErrBadMAC1, "flipped byte before mac2")
		default:
			wantErr(t, err, ErrBadMAC2, "flipped mac2")
		}
		if i >= respOffEphemeral && i < respOffMAC1 {
			fixMAC1(msg, a.pub)
			_, err = in.ConsumeResponse(msg)
			wantErr(t, err, ErrDecrypt, "flipped Noise byte with valid mac1")
		}
	}
	// Forged responses did not disturb the pending handshake.
	if _, err := in.ConsumeResponse(orig); err != nil {
		t.Fatalf("genuine response after forgeries: %v", err)
	}
	_, err = in.ConsumeResponse(orig)
	wantErr(t, err, ErrHandshakeDone, "response replayed")
}

func TestReplayAndStaleTimestamp(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	_, older := a.initiate(t, b, 1)
	_, newer := a.initiate(t, b, 2)
	if _, _, err := b.resp.ConsumeInitiation(newer, 10); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	_, _, err := b.resp.ConsumeInitiation(newer, 11)
	wantErr(t, err, ErrReplay, "message 1 replayed")
	_, _, err = b.resp.ConsumeInitiation(older, 12)
	wantErr(t, err, ErrStaleTimestamp, "older message 1")
	if errors.Is(err, ErrReplay) {
		t.Fatalf("an older timestamp reported as an exact replay: %v", err)
	}
	// Forget (peer removed and re-added on reload) clears the state.
	b.resp.Forget("site-a")
	if _, _, err := b.resp.ConsumeInitiation(older, 13); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

func TestTimestampSurvivesClockStepBack(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Hour)
	handshake(t, clk, a, b)
	clk.Advance(-30 * time.Minute) // NTP steps the clock back
	handshake(t, clk, a, b)        // still newer for b
}

func TestPerPeerRateLimit(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	_, m1 := a.initiate(t, b, 1)
	_, m2 := a.initiate(t, b, 2)
	_, m3 := a.initiate(t, b, 3)
	if _, _, err := b.resp.ConsumeInitiation(m1, 10); err != nil {
		t.Fatal(err)
	}
	clk.Advance(InitiationMinInterval - time.Millisecond)
	_, _, err := b.resp.ConsumeInitiation(m2, 11)
	wantErr(t, err, ErrRateLimited, "second initiation within 20 ms")
	clk.Advance(time.Millisecond)
	if _, _, err := b.resp.ConsumeInitiation(m3, 12); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

func TestTruncatedEmptyOversized(t *testing.T) {
	clk, a, b := pair(t)
	clk.Advance(time.Second)
	in, m1 := a.initiate(t, b, 1)
	m2, _, err := b.resp.ConsumeInitiation(bytes.Clone(m1), 2)
	if err != nil {
		t.Fatal(err)
	}
	g := NewCookieGenerator(b.pub, clk.Now)
	g.AddMACs(bytes.Clone(m1))
	cr, _ := b.checker.CreateReply(m1, addrA)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"header only", m1[:HeaderLen]},
		{"truncated by one", m1[:len(m1)-1]},
		{"oversized by one", append(bytes.Clone(m1), 0)},
		{"twice", append(bytes.Clone(m1), m1...)},
	} {
		_, _, err := b.resp.ConsumeInitiation(tc.msg, 2)
		wantErr(t, err, ErrMalformed, "initiation "+tc.name)
		if b.checker.CheckMAC1(tc.msg) {
			t.Fatalf("CheckMAC1 accepts initiation %s", tc.name)
		}
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{{"empty", nil}, {"truncated", m2[:len(m2)-1]}, {"oversized", append(bytes.Clone(m2), 0)}} {
		_, err := in.ConsumeResponse(tc.msg)
		wantErr(t, err, ErrMalformed, "response "+tc.name)
		if _, ok := PeekResponseReceiver(tc.msg); ok {
			t.Fatalf("PeekResponseReceiver accepts response %s", tc.name)
		}
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{{"empty", nil}, {"truncated", cr[:len(cr)-1]}, {"oversized", append(bytes.Clone(cr), 0)}} {
		wantErr(t, g.ConsumeReply(tc.msg), ErrMalformed, "cookie reply "+tc.name)
	}
	// An initiation is not a response and vice versa.
	_, err = in.ConsumeResponse(m1)
	wantErr(t, err, ErrMalformed, "initiation given as response")
	_, _, err = b.resp.ConsumeInitiation(m2, 2)
	wantErr(t, err, ErrMalformed, "response given as initiation")
}

func TestMalformedPayloadAfterDecrypt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(p *[initPayloadLen]byte)
		wantID string
	}{
		{"zero-length ID", func(p *[initPayloadLen]byte) { p[ipOffIDLen] = 0 }, ""},
		{"ID longer than 64", func(p *[initPayloadLen]byte) { p[ipOffIDLen] = MaxPeerIDLen + 1 }, ""},
		{"padding not zero", func(p *[initPayloadLen]byte) { p[initPayloadLen-1] = 1 }, "site-a"},
	} {
		p := initPayload{id: []byte("site-a"), offer: offerChaCha20Poly1305}
		var b [initPayloadLen]byte
		p.marshal(&b)
		tc.mutate(&b)
		got, err := parseInitPayload(b[:])
		wantErr(t, err, ErrMalformed, tc.name)
		if string(got.id) != tc.wantID {
			t.Fatalf("%s: claimed ID %q, want %q", tc.name, got.id, tc.wantID)
		}
	}
	var r [respPayloadLen]byte
	(&respPayload{chosen: 9}).marshal(&r)
	_, err := parseRespPayload(r[:])
	wantErr(t, err, ErrMalformed, "response with unknown cipher")
}

func TestMessageType(t *testing.T) {
	for _, tc := range []struct {
		msg []byte
		typ byte
		ok  bool
	}{
		{[]byte{4, 1, 0, 0}, 4, true},
		{[]byte{7, 1, 0, 0, 9}, 7, true}, // reserved type: the caller drops it
		{[]byte{4, 2, 0, 0}, 0, false},   // other version
		{[]byte{4, 1, 0, 1}, 0, false},   // reserved byte set
		{[]byte{4, 1, 0}, 0, false},
		{nil, 0, false},
	} {
		typ, ok := MessageType(tc.msg)
		if typ != tc.typ || ok != tc.ok {
			t.Errorf("MessageType(%x) = %d, %v; want %d, %v", tc.msg, typ, ok, tc.typ, tc.ok)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	clk, a, b := pair(t)
	_ = clk
	for _, tc := range []struct {
		name string
		cfg  Config
		peer PeerInfo
	}{
		{"no peer ID", Config{PrivateKey: a.cfg.PrivateKey}, b.infoOf(a)},
		{"peer ID too long", Config{PeerID: bytes.Repeat([]byte("x"), MaxPeerIDLen+1), PrivateKey: a.cfg.PrivateKey}, b.infoOf(a)},
		{"no private key", Config{PeerID: []byte("a")}, b.infoOf(a)},
		{"no peer key", Config{PeerID: []byte("a"), PrivateKey: a.cfg.PrivateKey}, PeerInfo{}},
		{"low-order peer key", Config{PeerID: []byte("a"), PrivateKey: a.cfg.PrivateKey}, PeerInfo{PublicKey: PublicKey{1}}},
	} {
		if _, err := NewInitiation(&tc.cfg, tc.peer, 1); err == nil {
			t.Errorf("%s: NewInitiation succeeded", tc.name)
		} else if strings.Contains(err.Error(), a.cfg.PrivateKey.Base64()) {
			t.Errorf("%s: error leaks the private key", tc.name)
		}
	}
	if err := ValidatePeerID(bytes.Repeat([]byte("x"), MaxPeerIDLen)); err != nil {
		t.Fatalf("64-byte ID refused: %v", err)
	}
}

func TestPeerErrorQuotesUntrustedID(t *testing.T) {
	err := &PeerError{PeerID: "evil\nFAKE LOG LINE", Err: ErrUnknownPeer}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("claimed ID printed raw: %q", err.Error())
	}
}

func TestConcurrentResponder(t *testing.T) {
	clk := newFakeClock()
	b := newHost(t, "hub", clk)
	const n = 8
	done := make(chan error, n)
	spokes := make([]*host, n)
	for i := range spokes {
		spokes[i] = newHost(t, "spoke-"+string(rune('a'+i)), clk)
		b.know(spokes[i])
	}
	for _, a := range spokes {
		go func() {
			for j := 0; j < 5; j++ {
				in, msg := a.initiate(t, b, uint32(j))
				resp, _, err := b.resp.ConsumeInitiation(msg, uint32(100+j))
				if err != nil && !errors.Is(err, ErrRateLimited) {
					done <- err
					return
				}
				if err == nil {
					if _, err := in.ConsumeResponse(resp); err != nil {
						done <- err
						return
					}
				}
				clk.Advance(InitiationMinInterval)
			}
			done <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
