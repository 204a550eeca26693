package tickets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"stunnel/handshake"
)

// FuzzOpenTicket: raw bytes; bytes behind the ring's own key name (reaching
// the AEAD); bytes as a genuinely sealed state (reaching the state decoder).
func FuzzOpenTicket(f *testing.F) {
	clk := &manualClock{t: t0}
	r := NewRing(Options{Now: clk.Now})
	valid, err := r.Seal(state(clk.Now()))
	if err != nil {
		f.Fatal(err)
	}
	k := r.keys[0]
	var plain [stateLen]byte
	_ = encodeState(&plain, state(clk.Now()))
	f.Add(valid, byte(0))
	f.Add(valid[offNonce:], byte(1))
	f.Add([]byte{}, byte(0))
	f.Add(plain[:], byte(2))
	// States of versions 2 and 1 (refused), and tickets of their sizes.
	for _, v := range []struct {
		version byte
		n       int
	}{{2, offResponder}, {1, offPSKTag}} {
		old := bytes.Clone(plain[:v.n])
		old[0] = v.version
		f.Add(old, byte(2))
		f.Add(append(bytes.Clone(valid[:offSealed]), make([]byte, v.n+chacha20poly1305.Overhead)...), byte(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		tk := data
		switch mode % 3 {
		case 1:
			tk = append(bytes.Clone(valid[:offNonce]), data...)
		case 2:
			aead, _ := chacha20poly1305.NewX(k.secret[:])
			tk = bytes.Clone(valid[:offSealed])
			tk = aead.Seal(tk, tk[offNonce:offSealed], data, tk[:offNonce])
		}
		st, err := r.OpenTicket(tk)
		if err != nil {
			if st != nil {
				t.Fatal("state with an error")
			}
			for _, e := range []error{handshake.ErrTicketInvalid, handshake.ErrTicketKeyUnknown, handshake.ErrTicketExpired, handshake.ErrReauthRequired} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("untyped refusal: %v", err)
		}
		if handshake.ValidatePeerID([]byte(st.PeerID)) != nil || !clk.Now().Before(st.Expiry) {
			t.Fatal("opened a ticket with a bad ID or expiry")
		}
		var again [stateLen]byte
		if err := encodeState(&again, st); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	k, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	f.Add(MarshalKeyFile([]Key{k}))
	f.Add([]byte("# x\n\n"))
	f.Add([]byte("00 AA 2020 1h 1h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseKeyFile("F", data)
		if err != nil {
			return
		}
		again, err := ParseKeyFile("F", MarshalKeyFile(keys))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range keys {
			if keys[i].IsErased() || keys[i].EncryptDecrypt <= 0 || keys[i].DecryptOnly <= 0 || again[i].secret != keys[i].secret {
				t.Fatal("accepted a bad key or lost it in the round trip")
			}
		}
	})
}

// FuzzParseGroupSecret: a group secret file holds 32 bytes in hex or base64.
// What is accepted is a usable secret that its own hex and base64 forms
// give back; a refusal is a nil secret and an error naming the file,
// never its contents, and the caller's buffer is left as it was.
func FuzzParseGroupSecret(f *testing.F) {
	g := testSecret(f, 5)
	f.Add([]byte(hex.EncodeToString(g.b[:]) + "\n"))
	f.Add([]byte(" " + base64.StdEncoding.EncodeToString(g.b[:]) + "\r\n"))
	f.Add([]byte(hex.EncodeToString(make([]byte, GroupSecretSize))))
	f.Add([]byte(hex.EncodeToString(g.b[:31])))
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		got, err := ParseGroupSecret("/etc/stunnel/group.secret", data)
		if !bytes.Equal(data, orig) {
			t.Fatal("ParseGroupSecret changed the caller's buffer")
		}
		if err != nil {
			msg := err.Error()
			if got != nil || !strings.HasPrefix(msg, "group secret file /etc/stunnel/group.secret ") || strings.Contains(msg, "\n") {
				t.Fatalf("refusal %v with secret %v", err, got != nil)
			}
			if s := bytes.TrimSpace(data); len(s) >= 8 && strings.Contains(msg, string(s)) {
				t.Fatalf("the error %q shows the file's contents", msg)
			}
			return
		}
		if allZero(got.b[:]) {
			t.Fatal("accepted an all-zero secret")
		}
		for _, form := range []string{hex.EncodeToString(got.b[:]), base64.StdEncoding.EncodeToString(got.b[:])} {
			again, err := ParseGroupSecret("f", []byte(form))
			if err != nil || again.b != got.b {
				t.Fatalf("the secret's own %d-digit form does not parse back: %v", len(form), err)
			}
		}
	})
}
