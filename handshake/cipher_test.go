package handshake

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCipherNegotiation(t *testing.T) {
	type side struct {
		pref CipherPreference
		aes  bool
	}
	for _, tc := range []struct {
		ini, resp side
		want      Cipher
		iniErr    string // substring of the initiator's error on mismatch
		respErr   string
	}{
		{side{CipherAuto, true}, side{CipherAuto, true}, CipherAES256GCM, "", ""},
		{side{CipherAuto, true}, side{CipherAuto, false}, CipherChaCha20Poly1305, "", ""},
		{side{CipherAuto, false}, side{CipherAuto, true}, CipherChaCha20Poly1305, "", ""},
		{side{CipherAuto, false}, side{CipherAuto, false}, CipherChaCha20Poly1305, "", ""},
		{side{PreferChaCha20Poly1305, true}, side{CipherAuto, true}, CipherChaCha20Poly1305, "", ""},
		{side{CipherAuto, true}, side{PreferChaCha20Poly1305, true}, CipherChaCha20Poly1305, "", ""},
		{side{PreferAES256GCM, false}, side{CipherAuto, true}, CipherAES256GCM, "", ""},
		{side{CipherAuto, true}, side{PreferAES256GCM, false}, CipherAES256GCM, "", ""},
		{side{PreferAES256GCM, true}, side{PreferChaCha20Poly1305, true}, CipherNone,
			"cipher mismatch: we offer aes256gcm, peer accepts chacha20poly1305",
			"cipher mismatch: peer offers aes256gcm, we accept chacha20poly1305"},
		{side{PreferChaCha20Poly1305, true}, side{PreferAES256GCM, true}, CipherNone,
			"cipher mismatch: we offer chacha20poly1305, peer accepts aes256gcm",
			"cipher mismatch: peer offers chacha20poly1305, we accept aes256gcm"},
		// auto without AES hardware does not accept software AES.
		{side{PreferAES256GCM, true}, side{CipherAuto, false}, CipherNone,
			"we offer aes256gcm, peer accepts chacha20poly1305", "peer offers aes256gcm, we accept chacha20poly1305"},
		{side{CipherAuto, false}, side{PreferAES256GCM, true}, CipherNone,
			"we offer chacha20poly1305, peer accepts aes256gcm", "peer offers chacha20poly1305, we accept aes256gcm"},
	} {
		clk, a, b := pair(t)
		a.cfg.Cipher, b.cfg.Cipher = tc.ini.pref, tc.resp.pref
		iniAES, respAES := tc.ini.aes, tc.resp.aes
		a.cfg.AESHardware = func() bool { return iniAES }
		b.cfg.AESHardware = func() bool { return respAES }
		clk.Advance(time.Second)
		in, msg := a.initiate(t, b, 1)
		resp, sb, rerr := b.resp.ConsumeInitiation(msg, 2)
		if resp == nil {
			t.Fatalf("%+v: no response: %v", tc, rerr)
		}
		sa, ierr := in.ConsumeResponse(resp)
		if tc.want == CipherNone {
			wantErr(t, rerr, ErrCipherMismatch, "responder")
			wantErr(t, ierr, ErrCipherMismatch, "initiator")
			if !strings.Contains(ierr.Error(), tc.iniErr) || !strings.Contains(rerr.Error(), tc.respErr) {
				t.Errorf("%+v: errors %q / %q", tc, ierr, rerr)
			}
			if sa != nil || sb != nil {
				t.Errorf("%+v: session despite mismatch", tc)
			}
			continue
		}
		if rerr != nil || ierr != nil {
			t.Fatalf("%+v: %v / %v", tc, rerr, ierr)
		}
		if sa.Cipher != tc.want || sb.Cipher != tc.want {
			t.Errorf("%+v: got %v/%v, want %v", tc, sa.Cipher, sb.Cipher, tc.want)
		}
	}
}

// The data keys are bound to the cipher: the same transcript keys give
// different data keys for different ciphers.
func TestDataKeyBindsCipher(t *testing.T) {
	var k, x, y [32]byte
	k[0] = 1
	dataKey(&x, &k, labelKeyI2R, CipherChaCha20Poly1305)
	dataKey(&y, &k, labelKeyI2R, CipherAES256GCM)
	if x == y {
		t.Fatal("cipher not bound into the data key")
	}
	dataKey(&y, &k, labelKeyR2I, CipherChaCha20Poly1305)
	if x == y {
		t.Fatal("direction not bound into the data key")
	}
}

// A response that authenticates but chooses a cipher we did not offer makes
// no session and is a cipher mismatch (docs/PROTOCOL.md 4.4, section 8), not
// a malformed message: the caller abandons the attempt and reports it.
func TestChosenCipherNotOfferedIsCipherMismatch(t *testing.T) {
	_, a, b := fuzzPair()
	a.cfg.Cipher = PreferChaCha20Poly1305
	in, msg1 := a.initiate(t, b, 1)
	// sender 2, chosen AES-256-GCM (2), the responder accepts AES only.
	resp := responseWithPayload(t, a, b, msg1, []byte{2, 0, 0, 0, byte(CipherAES256GCM), offerAES256GCM})
	s, err := in.ConsumeResponse(resp)
	if s != nil {
		t.Fatal("a session under a cipher we did not offer")
	}
	wantErr(t, err, ErrCipherMismatch, "response choosing a cipher not offered")
	if errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "we offer chacha20poly1305, peer chose aes256gcm") {
		t.Fatalf("error %q does not name both choices as a cipher mismatch", err)
	}
	if _, err := in.ConsumeResponse(resp); !errors.Is(err, ErrHandshakeDone) {
		t.Fatalf("a second response after the mismatch: %v, want ErrHandshakeDone", err)
	}
}
