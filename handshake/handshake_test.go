package handshake

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

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
