package handshake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/blake2s"

	"stunnel/internal/fakeclock"
)

// Fuzz targets for every parser of network bytes in this package. Keys are
// fixed, so a crashing input saved under testdata/fuzz reproduces. Each target
// has modes: raw bytes; bytes with a valid mac1 (so the fuzzer gets past the
// cheap check into Noise); bytes as the plaintext payload of a genuinely
// encrypted message (so it reaches the parsers behind the decryption).

func fixedHost(id string, clk *fakeclock.Clock) *host {
	priv := PrivateKey(blake2s.Sum256([]byte("stunnel fuzz " + id)))
	priv.clamp()
	peers := peerMap{}
	cfg := &Config{PeerID: []byte(id), PrivateKey: priv, Peers: peers, Now: clk.Now}
	h := &host{id: id, cfg: cfg, pub: priv.PublicKey(), peers: peers}
	h.resp = NewResponder(cfg)
	h.checker = NewCookieChecker(h.pub, clk.Now, nil)
	return h
}

func fuzzPair() (*fakeclock.Clock, *host, *host) {
	clk := newFakeClock()
	a, b := fixedHost("site-a", clk), fixedHost("site-b", clk)
	a.know(b)
	b.know(a)
	return clk, a, b
}

// initiationWithPayload encrypts an arbitrary payload as message 1 from a to b.
func initiationWithPayload(t testing.TB, a, b *host, payload []byte) []byte {
	in, err := NewInitiation(a.cfg, a.infoOf(b), 1)
	if err != nil {
		t.Fatal(err)
	}
	copy(in.plain[:], payload)
	clear(in.plain[min(len(payload), initPayloadLen):])
	msg := make([]byte, InitiationSize)
	if _, err := in.writeMessage1(msg, &in.plain); err != nil {
		t.Fatal(err)
	}
	fixMAC1(msg, b.pub)
	return msg
}

func FuzzConsumeInitiation(f *testing.F) {
	clk, a, b := fuzzPair()
	_, valid := a.initiate(f, b, 1)
	f.Add(valid, byte(0))
	f.Add(valid, byte(1))
	f.Add(valid[:InitiationSize-1], byte(0))
	f.Add([]byte{}, byte(0))
	f.Add([]byte{1, 1, 0, 0}, byte(0))
	var p [initPayloadLen]byte
	(&initPayload{sender: 9, stamp: tai64nFromUnixNano(1), offer: 3, id: []byte("site-a")}).marshal(&p)
	f.Add(p[:], byte(2))
	(&initPayload{id: []byte("nobody")}).marshal(&p)
	f.Add(p[:], byte(2))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		clk.Advance(time.Second)
		msg := data
		switch mode % 3 {
		case 1:
			if len(msg) != InitiationSize {
				return
			}
			msg = bytes.Clone(data)
			fixMAC1(msg, b.pub)
		case 2:
			msg = initiationWithPayload(t, a, b, data)
		}
		resp, s, err := b.resp.ConsumeInitiation(msg, 2)
		switch {
		case err == nil && (s == nil || len(resp) != ResponseSize):
			t.Fatalf("success without session or response")
		case err != nil && s != nil:
			t.Fatalf("session with error %v", err)
		case err != nil && resp != nil && !errors.Is(err, ErrCipherMismatch):
			t.Fatalf("response with error %v", err)
		}
	})
}

// responseWithPayload answers msg1 (from in) like a responder would, but with
// an arbitrary payload.
func responseWithPayload(t testing.TB, a, b *host, msg1 []byte, payload []byte) []byte {
	static := noise.DHKey{Private: bytes.Clone(b.cfg.PrivateKey[:]), Public: b.pub[:]}
	hs, err := newNoise(false, nil, static, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := hs.ReadMessage(nil, msg1[initOffEphemeral:initOffMAC1]); err != nil {
		t.Fatal(err)
	}
	if err := hs.SetPresharedKey(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	var pl [respPayloadLen]byte
	copy(pl[:], payload)
	resp := make([]byte, ResponseSize)
	putHeader(resp, MessageTypeResponse)
	binary.LittleEndian.PutUint32(resp[respOffReceiver:], 1)
	if _, _, _, err := hs.WriteMessage(resp[:respOffEphemeral], pl[:]); err != nil {
		t.Fatal(err)
	}
	fixMAC1(resp, a.pub)
	return resp
}

func FuzzConsumeResponse(f *testing.F) {
	clk, a, b := fuzzPair()
	in, msg1 := a.initiate(f, b, 1)
	valid, _, err := b.resp.ConsumeInitiation(msg1, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, byte(0))
	f.Add(valid, byte(1))
	f.Add(valid[:ResponseSize-1], byte(0))
	f.Add([]byte{}, byte(0))
	f.Add([]byte{2, 1, 0, 0, 1, 0, 0, 0}, byte(0))
	f.Add([]byte{7, 0, 0, 0, 1, 1}, byte(2))
	f.Add([]byte{7, 0, 0, 0, 0, 3}, byte(2))
	f.Add([]byte{7, 0, 0, 0, 9, 3}, byte(2))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		if in.done {
			clk.Advance(time.Second)
			in, msg1 = a.initiate(t, b, 1)
		}
		msg := data
		switch mode % 3 {
		case 1:
			if len(msg) != ResponseSize {
				return
			}
			msg = bytes.Clone(data)
			binary.LittleEndian.PutUint32(msg[respOffReceiver:], 1)
			fixMAC1(msg, a.pub)
		case 2:
			msg = responseWithPayload(t, a, b, msg1, data)
		}
		PeekResponseReceiver(msg)
		s, err := in.ConsumeResponse(msg)
		if (err == nil) == (s == nil) {
			t.Fatalf("session %v with error %v", s, err)
		}
		if s != nil && (s.SendKey == s.RecvKey || s.Cipher == CipherNone) {
			t.Fatalf("bad session from fuzzed response")
		}
	})
}

func FuzzCookieReply(f *testing.F) {
	clk, a, b := fuzzPair()
	gen := NewCookieGenerator(b.pub, clk.Now)
	_, msg1 := a.initiate(f, b, 1)
	gen.AddMACs(msg1)
	valid, err := b.checker.CreateReply(msg1, addrA)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, byte(0))
	f.Add(valid[:CookieReplySize-1], byte(0))
	f.Add([]byte{}, byte(0))
	f.Add([]byte{3, 1, 0, 0}, byte(0))
	f.Add(bytes.Repeat([]byte{0xff}, 16), byte(1))
	f.Add(msg1, byte(2))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		gen.AddMACs(msg1) // a reply is accepted once per message sent
		msg := data
		switch mode % 3 {
		case 1: // a genuinely sealed cookie of any content and length
			reply := make([]byte, HeaderLen+nonce24Len, CookieReplySize)
			putHeader(reply, MessageTypeCookieReply)
			msg = b.checker.cookieKey.Seal(reply, reply[cookieOffNonce:cookieOffSealed], data, msg1[initOffMAC1:initOffMAC2])
		case 2: // the checker's own parsers on arbitrary bytes
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, mode}), 1)
			b.checker.CheckMAC1(data)
			b.checker.CheckMAC2(data, src)
			if r, err := b.checker.CreateReply(data, src); err == nil && len(r) != CookieReplySize {
				t.Fatalf("cookie reply of %d bytes", len(r))
			}
			MessageType(data)
			g := NewCookieGenerator(b.pub, clk.Now)
			g.AddMACs(data)
		}
		err := gen.ConsumeReply(msg)
		if mode%3 == 1 && (err == nil) != (len(data) == cookieLen) {
			t.Fatalf("sealed cookie of %d bytes: %v", len(data), err)
		}
	})
}
