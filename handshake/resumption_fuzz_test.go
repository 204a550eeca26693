package handshake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// Fuzz targets for the resumption parsers, in the modes of fuzz_test.go: raw
// bytes; bytes with a valid mac1; bytes as the plaintext payload of a
// genuinely encrypted message (reaching the parsers behind the decryption).

func fuzzResumeSetup(t testing.TB) (*fakeOpener, []byte, [32]byte, *host, *host, func()) {
	clk, a, b := fuzzPair()
	o, ticket, secret := resumeSetup(t, clk, a, b)
	return o, ticket, secret, a, b, func() { clk.Advance(time.Second) }
}

// resumptionWithPayload encrypts an arbitrary payload as message 5.
func resumptionWithPayload(t testing.TB, a, b *host, ticket []byte, secret *[32]byte, payload []byte) []byte {
	r, err := NewResumption(a.cfg, a.infoOf(b), ticket, secret, 1)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.plain[:], payload)
	clear(r.plain[min(len(payload), resumePayloadLen):])
	msg := bytes.Clone(r.msg)
	if _, err := r.writeMessage5(msg); err != nil {
		t.Fatal(err)
	}
	fixMAC1(msg, b.pub)
	return msg
}

func FuzzConsumeResumption(f *testing.F) {
	o, ticket, secret, a, b, tick := fuzzResumeSetup(f)
	r, _ := NewResumption(a.cfg, a.infoOf(b), ticket, &secret, 1)
	valid := r.Message()
	fixMAC1(valid, b.pub)
	f.Add(valid, byte(0))
	f.Add(valid, byte(1))
	f.Add(valid[:len(valid)-1], byte(1))
	f.Add([]byte{}, byte(0))
	f.Add([]byte{5, 1, 0, 0, 0, 2}, byte(0))
	f.Add(make([]byte, resumePayloadLen), byte(2))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		tick()
		o.used = map[string]bool{}
		msg := data
		switch mode % 3 {
		case 1:
			if _, err := resumeTicketLen(msg); err != nil {
				return
			}
			msg = bytes.Clone(data)
			fixMAC1(msg, b.pub)
		case 2:
			msg = resumptionWithPayload(t, a, b, ticket, &secret, data)
		}
		if tk, off, err := ParseResumption(msg); err == nil && (len(tk) == 0 || off+2*macLen != len(msg)) {
			t.Fatal("ParseResumption: inconsistent split")
		}
		b.checker.CheckMAC1(msg)
		resp, s, st, err := b.resp.ConsumeResumption(msg, 2, o)
		switch {
		case err == nil && (s == nil || st == nil || len(resp) != ResumptionResponseSize || !s.Resumed):
			t.Fatalf("success without session, state or response")
		case err != nil && (s != nil || st != nil):
			t.Fatalf("session with error %v", err)
		case err != nil && resp != nil && !errors.Is(err, ErrCipherMismatch):
			t.Fatalf("response with error %v", err)
		}
	})
}

func FuzzResumptionResponse(f *testing.F) {
	o, ticket, secret, a, b, tick := fuzzResumeSetup(f)
	tick()
	r, msg5 := a.resumeMsg(f, b, ticket, &secret, 1)
	valid, _, _, err := b.resp.ConsumeResumption(msg5, 2, o)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, byte(0))
	f.Add(valid, byte(1))
	f.Add(valid[:len(valid)-1], byte(0))
	f.Add([]byte{6, 1, 0, 0, 1, 0, 0, 0}, byte(0))
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		if r.done {
			tick()
			r, _ = a.resumeMsg(t, b, ticket, &secret, 1)
		}
		msg := data
		if mode%2 == 1 {
			if len(msg) != ResumptionResponseSize {
				return
			}
			msg = bytes.Clone(data)
			binary.LittleEndian.PutUint32(msg[respOffReceiver:], 1)
			fixMAC1(msg, a.pub)
		}
		PeekResumptionResponseReceiver(msg)
		a.checker.CheckMAC1(msg)
		s, err := r.ConsumeResponse(msg)
		if (err == nil) == (s == nil) {
			t.Fatalf("session %v with error %v", s, err)
		}
	})
}

func FuzzTicketMessage(f *testing.F) {
	m, _ := MarshalTicketMessage(bytes.Repeat([]byte{1}, 212), time.Hour)
	f.Add(m)
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 0, 0, 0, 1, 0, 9})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 2, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, life, err := ParseTicketMessage(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !IsControlMessage(data) || len(tk) == 0 || len(tk) > MaxTicketLen || life < time.Second {
			t.Fatal("accepted a message outside the bounds")
		}
		again, err := MarshalTicketMessage(tk, life)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}
