package handshake

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
)

// fakeOpener is a TicketOpener whose tickets are opaque labels in a map; the
// real one (tickets.Ring) is tested with these messages in tickets/.
type fakeOpener struct {
	mu     sync.Mutex
	states map[string]TicketState
	used   map[string]bool
}

func (o *fakeOpener) OpenTicket(t []byte) (*TicketState, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.states[string(t)]
	if !ok {
		return nil, ErrTicketInvalid
	}
	return &st, nil
}

func (o *fakeOpener) ConsumeTicket(t []byte, _ *TicketState) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.used[string(t)] {
		return ErrTicketReused
	}
	o.used[string(t)] = true
	return nil
}

// resumeSetup: a full handshake a->b, then b "issues" a ticket for it.
func resumeSetup(t testing.TB, clk *fakeclock.Clock, a, b *host) (*fakeOpener, []byte, [32]byte) {
	t.Helper()
	sa, sb := handshake(t, clk, a, b)
	if sa.ResumptionSecret != sb.ResumptionSecret || sa.ResumptionSecret == [32]byte{} {
		t.Fatal("resumption secrets differ or are zero")
	}
	ticket := bytes.Repeat([]byte{0xab}, 200)
	o := &fakeOpener{states: map[string]TicketState{}, used: map[string]bool{}}
	o.states[string(ticket)] = TicketState{PeerID: a.id, PeerStatic: a.pub, ResumptionSecret: sb.ResumptionSecret, AuthTime: clk.Now(), ResponderStatic: b.pub}
	return o, ticket, sa.ResumptionSecret
}

func (h *host) resumeMsg(t testing.TB, o *host, ticket []byte, secret *[32]byte, idx uint32) (*Resumption, []byte) {
	t.Helper()
	r, err := NewResumption(h.cfg, h.infoOf(o), ticket, secret, idx)
	if err != nil {
		t.Fatal(err)
	}
	msg := r.Message()
	NewCookieGenerator(o.pub, h.cfg.Now).AddMACs(msg)
	return r, msg
}

func TestResumptionRoundTrip(t *testing.T) {
	clk, a, b := pair(t)
	o, ticket, secret := resumeSetup(t, clk, a, b)
	clk.Advance(time.Second)
	r, msg := a.resumeMsg(t, b, ticket, &secret, 7)
	if len(msg) != ResumptionOverhead+len(ticket) || !b.checker.CheckMAC1(msg) {
		t.Fatalf("message 5: %d bytes, mac1 ok %v", len(msg), b.checker.CheckMAC1(msg))
	}
	if got, _, err := ParseResumption(msg); err != nil || !bytes.Equal(got, ticket) {
		t.Fatalf("ParseResumption: %v", err)
	}
	resp, sb, st, err := b.resp.ConsumeResumption(msg, 8, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.PeerID != a.id || !a.checker.CheckMAC1(resp) {
		t.Fatal("ticket state or mac1 of message 6 wrong")
	}
	if idx, ok := PeekResumptionResponseReceiver(resp); !ok || idx != 7 {
		t.Fatalf("PeekResumptionResponseReceiver = %d, %v", idx, ok)
	}
	sa, err := r.ConsumeResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !sa.Resumed || !sb.Resumed || sa.SendKey != sb.RecvKey || sa.RecvKey != sb.SendKey || sa.SendKey == sa.RecvKey {
		t.Fatal("resumed keys do not agree or are equal across directions")
	}
	if sa.ResumptionSecret != sb.ResumptionSecret || sa.ResumptionSecret == secret {
		t.Fatal("the resumed session's resumption secret is not fresh or does not agree")
	}
	_, err = r.ConsumeResponse(resp)
	wantErr(t, err, ErrHandshakeDone, "message 6 replayed")
	_, _, _, err = b.resp.ConsumeResumption(msg, 9, o)
	wantErr(t, err, ErrReplay, "message 5 replayed")
}

func TestResumptionFlippedByteMessage5(t *testing.T) {
	clk, a, b := pair(t)
	o, ticket, secret := resumeSetup(t, clk, a, b)
	clk.Advance(time.Second)
	_, orig := a.resumeMsg(t, b, ticket, &secret, 1)
	mac1Off := len(orig) - 2*macLen
	for i := range orig {
		msg := bytes.Clone(orig)
		msg[i] ^= 0x01
		_, _, _, err := b.resp.ConsumeResumption(msg, 2, o)
		switch {
		case i < resumeOffTicket:
			wantErr(t, err, ErrMalformed, "flipped header or ticket length")
			continue
		case i < mac1Off+macLen:
			wantErr(t, err, ErrBadMAC1, "flipped byte before mac2")
			if i >= mac1Off {
				continue // fixing mac1 would restore the genuine message
			}
		default:
			if err != nil {
				t.Fatalf("byte %d (mac2) off load: %v", i, err)
			}
			o.used = map[string]bool{}
			b.resp.Forget(a.id)
			continue
		}
		fixMAC1(msg, b.pub)
		_, _, _, err = b.resp.ConsumeResumption(msg, 2, o)
		if i < resumeOffTicket+len(ticket) {
			wantErr(t, err, ErrTicketInvalid, "flipped ticket byte")
		} else if i < mac1Off {
			wantErr(t, err, ErrDecrypt, "flipped Noise byte with valid mac1")
		}
	}
	if len(o.used) != 0 {
		t.Fatal("a refused message spent the ticket")
	}
	if _, _, _, err := b.resp.ConsumeResumption(orig, 2, o); err != nil {
		t.Fatalf("genuine message 5 after forgeries: %v", err)
	}
}

func TestResumptionFlippedByteMessage6(t *testing.T) {
	clk, a, b := pair(t)
	o, ticket, secret := resumeSetup(t, clk, a, b)
	clk.Advance(time.Second)
	r, msg := a.resumeMsg(t, b, ticket, &secret, 0x0a0b0c0d)
	orig, _, _, err := b.resp.ConsumeResumption(msg, 2, o)
	if err != nil {
		t.Fatal(err)
	}
	flipEveryResponseByte(t, orig, a.pub, func(msg []byte) error {
		_, err := r.ConsumeResponse(msg)
		return err
	})
	if _, err := r.ConsumeResponse(orig); err != nil {
		t.Fatalf("genuine message 6 after forgeries: %v", err)
	}
}

func TestResumptionCookies(t *testing.T) {
	clk, a, b := pair(t)
	o, ticket, secret := resumeSetup(t, clk, a, b)
	clk.Advance(time.Second)
	r, err := NewResumption(a.cfg, a.infoOf(b), ticket, &secret, 1)
	if err != nil {
		t.Fatal(err)
	}
	gen := NewCookieGenerator(b.pub, clk.Now)
	msg := r.Message()
	gen.AddMACs(msg)
	if !b.checker.CheckMAC1(msg) || b.checker.CheckMAC2(msg, addrA) {
		t.Fatal("before a cookie: mac1 must pass, mac2 must not")
	}
	reply, err := b.checker.CreateReply(msg, addrA)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.ConsumeReply(reply); err != nil {
		t.Fatalf("cookie reply to message 5: %v", err)
	}
	msg = r.Message()
	gen.AddMACs(msg)
	if !b.checker.CheckMAC2(msg, addrA) {
		t.Fatal("message 5 with a cookie fails mac2")
	}
	resp, _, _, err := b.resp.ConsumeResumption(msg, 2, o)
	if err != nil {
		t.Fatal(err)
	}
	if !a.checker.CheckMAC1(resp) {
		t.Fatal("CheckMAC1 refuses message 6")
	}
}

func TestResumptionCipherMismatchAndNoOpener(t *testing.T) {
	clk, a, b := pair(t)
	o, ticket, secret := resumeSetup(t, clk, a, b)
	_, _, _, err := b.resp.ConsumeResumption(func() []byte { _, m := a.resumeMsg(t, b, ticket, &secret, 1); return m }(), 2, nil)
	wantErr(t, err, ErrTicketKeyUnknown, "responder without tickets")
	a.cfg.Cipher, b.cfg.Cipher = PreferChaCha20Poly1305, PreferAES256GCM
	clk.Advance(time.Second)
	r, msg := a.resumeMsg(t, b, ticket, &secret, 1)
	resp, s, st, err := b.resp.ConsumeResumption(msg, 2, o)
	wantErr(t, err, ErrCipherMismatch, "responder side")
	var pe *PeerError
	if resp == nil || s != nil || st != nil || !errors.As(err, &pe) || pe.PeerID != a.id {
		t.Fatalf("cipher mismatch: resp %v, session %v, err %v", resp != nil, s != nil, err)
	}
	_, err = r.ConsumeResponse(resp)
	wantErr(t, err, ErrCipherMismatch, "initiator side")
}

func TestNewResumptionArgs(t *testing.T) {
	clk, a, b := pair(t)
	_ = clk
	var s [32]byte
	if _, err := NewResumption(a.cfg, a.infoOf(b), nil, &s, 1); err == nil {
		t.Fatal("empty ticket accepted")
	}
	if _, err := NewResumption(a.cfg, a.infoOf(b), make([]byte, MaxTicketLen+1), &s, 1); err == nil {
		t.Fatal("oversized ticket accepted")
	}
	if _, err := NewResumption(&Config{}, a.infoOf(b), []byte{1}, &s, 1); err == nil {
		t.Fatal("config without a key accepted")
	}
}

func TestTicketMessage(t *testing.T) {
	tk := bytes.Repeat([]byte{9}, 212)
	m, err := MarshalTicketMessage(tk, 90*time.Minute+500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !IsControlMessage(m) || IsControlMessage(nil) || IsControlMessage([]byte{0x45}) {
		t.Fatal("IsControlMessage")
	}
	got, life, err := ParseTicketMessage(m)
	if err != nil || !bytes.Equal(got, tk) || life != 90*time.Minute {
		t.Fatalf("round trip: %v %v", life, err)
	}
	for _, bad := range [][]byte{nil, m[:8], m[:len(m)-1], append(bytes.Clone(m), 0), {0x01, 0x02, 1, 0, 0, 0, 1, 0, 7}, {0x01, 0x01, 0, 0, 0, 0, 1, 0, 7}, {0x01, 0x01, 1, 0, 0, 0, 0, 0}} {
		if _, _, err := ParseTicketMessage(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
	if _, err := MarshalTicketMessage(tk, 0); err == nil {
		t.Fatal("zero lifetime accepted")
	}
	if _, err := MarshalTicketMessage(make([]byte, MaxTicketLen+1), time.Hour); err == nil {
		t.Fatal("oversized ticket accepted")
	}
}

func TestRefusalReason(t *testing.T) {
	for err, want := range map[error]string{
		ErrReplay:         "replay",
		ErrStaleTimestamp: "stale_timestamp",
		&PeerError{PeerID: "x", Err: ErrTicketReused}: "ticket_reused",
		&PeerError{PeerID: "x", Err: ErrKeyMismatch}:  "key_mismatch",
		ErrTicketExpired:          "ticket_expired",
		errors.New("something"):   "other",
		malformed("x"):            "malformed",
		cipherMismatch("a %v", 1): "cipher_mismatch",
	} {
		if got := RefusalReason(err); got != want {
			t.Errorf("RefusalReason(%v) = %q, want %q", err, got, want)
		}
	}
}

// A ticket resumes only at the responder identity it names
// (TicketState.ResponderStatic): one naming another static key, as a
// gateway of another identity sharing the ticket keys would issue, or
// naming none, is refused before anything is recorded, and the same
// ticket still resumes once it names this responder.
func TestResumptionAtAnotherResponderRefused(t *testing.T) {
	clk, a, b := pair(t)
	o, ticket, secret := resumeSetup(t, clk, a, b)
	genuine := o.states[string(ticket)]
	for _, other := range []PublicKey{a.pub, {}} {
		st := genuine
		st.ResponderStatic = other
		o.states[string(ticket)] = st
		clk.Advance(time.Second)
		_, msg := a.resumeMsg(t, b, ticket, &secret, 1)
		resp, s, _, err := b.resp.ConsumeResumption(msg, 2, o)
		wantErr(t, err, ErrTicketInvalid, "a ticket naming another responder")
		if resp != nil || s != nil || len(o.used) != 0 {
			t.Fatal("a refused ticket was answered or spent")
		}
	}
	o.states[string(ticket)] = genuine
	clk.Advance(time.Second)
	_, msg := a.resumeMsg(t, b, ticket, &secret, 1)
	if _, _, _, err := b.resp.ConsumeResumption(msg, 2, o); err != nil {
		t.Fatalf("the ticket naming this responder: %v", err)
	}
}
