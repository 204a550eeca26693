package handshake

import (
	"bytes"
	"testing"
	"time"
)

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
	if len(orig) != ResponseSize {
		t.Fatalf("response is %d bytes, want %d", len(orig), ResponseSize)
	}
	flipEveryResponseByte(t, orig, a.pub, func(msg []byte) error {
		_, err := in.ConsumeResponse(msg)
		return err
	})
	// Forged responses did not disturb the pending handshake.
	if _, err := in.ConsumeResponse(orig); err != nil {
		t.Fatalf("genuine response after forgeries: %v", err)
	}
	_, err = in.ConsumeResponse(orig)
	wantErr(t, err, ErrHandshakeDone, "response replayed")
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

// flipEveryResponseByte flips each byte of orig, a response (message 2)
// or a resumption response (message 6), which share their layout up to the
// Noise payload, and checks that consume refuses each copy for the reason
// the flipped field gives; a flip inside the Noise part, with mac1 mended,
// must fail decryption.
func flipEveryResponseByte(t *testing.T, orig []byte, receiver PublicKey, consume func([]byte) error) {
	t.Helper()
	for i := range orig {
		msg := bytes.Clone(orig)
		msg[i] ^= 0x80
		err := consume(msg)
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
			fixMAC1(msg, receiver)
			wantErr(t, consume(msg), ErrDecrypt, "flipped Noise byte with valid mac1")
		}
	}
}
