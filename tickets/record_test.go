package tickets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
)

func testSecret(t testing.TB, b byte) *GroupSecret {
	t.Helper()
	g, err := NewGroupSecret(bytes.NewReader(bytes.Repeat([]byte{b}, GroupSecretSize)))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestRecordRoundTripAndRefusals(t *testing.T) {
	g, other := testSecret(t, 1), testSecret(t, 2)
	k, err := GenerateKey(nil, t0, time.Hour, 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := SealRecord(g, "/st/", &k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != RecordSize {
		t.Fatalf("record is %d bytes, want %d", len(rec), RecordSize)
	}
	if bytes.Contains(rec, k.secret[:]) {
		t.Fatal("record holds the key secret in the clear")
	}
	got, err := OpenRecord(g, "/st/", k.Name, rec)
	if err != nil {
		t.Fatal(err)
	}
	if got.secret != k.secret || !got.Created.Equal(k.Created) || got.EncryptDecrypt != k.EncryptDecrypt || got.DecryptOnly != k.DecryptOnly {
		t.Fatalf("opened %+v, want %+v", got, k)
	}
	// Two seals of one key differ (random nonce).
	rec2, _ := SealRecord(g, "/st/", &k, nil)
	if bytes.Equal(rec, rec2) {
		t.Fatal("two records of one key are equal: nonce not random")
	}

	otherName := k.Name
	otherName[0] ^= 1
	tampered := bytes.Clone(rec)
	tampered[40] ^= 0x80
	for _, c := range []struct {
		what   string
		g      *GroupSecret
		prefix string
		name   [NameSize]byte
		data   []byte
	}{
		{"another group secret", other, "/st/", k.Name, rec},
		{"another prefix", g, "/other/", k.Name, rec},
		{"another name (a swapped record)", g, "/st/", otherName, rec},
		{"tampered", g, "/st/", k.Name, tampered},
		{"truncated", g, "/st/", k.Name, rec[:len(rec)-1]},
		{"empty", g, "/st/", k.Name, nil},
		{"unknown version", g, "/st/", k.Name, append([]byte{2}, rec[1:]...)},
	} {
		_, err := OpenRecord(c.g, c.prefix, c.name, c.data)
		if !errors.Is(err, ErrRecordInvalid) {
			t.Errorf("%s: err %v, want ErrRecordInvalid", c.what, err)
		}
	}
	// Lifetimes out of range are refused at sealing.
	bad := k
	bad.DecryptOnly = 0
	if _, err := SealRecord(g, "/st/", &bad, nil); err == nil {
		t.Error("sealed a key with a zero lifetime")
	}
	k.Erase()
	if _, err := SealRecord(g, "/st/", &k, nil); err == nil {
		t.Error("sealed an erased key")
	}
}

func TestGroupSecretFile(t *testing.T) {
	dir := t.TempDir()
	g := testSecret(t, 7)
	path := filepath.Join(dir, "group.secret")
	if err := WriteGroupSecretFile(path, g); err != nil {
		t.Fatal(err)
	}
	if err := WriteGroupSecretFile(path, g); err == nil {
		t.Fatal("overwrote an existing group secret file")
	}
	got, err := ReadGroupSecretFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.b != g.b {
		t.Fatal("read back a different secret")
	}
	// base64 is accepted as well.
	b64 := filepath.Join(dir, "b64")
	os.WriteFile(b64, []byte("  BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"), 0o600)
	if got, err := ReadGroupSecretFile(b64); err != nil || got.b != g.b {
		t.Fatalf("base64 file: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, err := ReadGroupSecretFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable file: err %v, want a mode refusal", err)
	}
	for _, c := range []string{"", "abcd", strings.Repeat("0", 64), strings.Repeat("zz", 32), "AAAA"} {
		if _, err := ParseGroupSecret("f", []byte(c)); err == nil {
			t.Errorf("accepted %q", c)
		} else if c != "" && strings.Contains(err.Error(), c) {
			t.Errorf("error repeats the file contents: %v", err)
		}
	}
}

func TestSetExternalKeysKeepsUsedCache(t *testing.T) {
	clk := fakeclock.New(t0)
	r := NewRing(Options{Now: clk.Now})
	k, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	old, _ := GenerateKey(nil, t0.Add(-3*time.Hour), time.Hour, time.Hour) // already ended
	r.SetExternalKeys([]Key{k, old})
	if ks := r.Keys(); len(ks) != 1 || ks[0].Name != k.NameHex() {
		t.Fatalf("keys %+v, want only %s", ks, k.NameHex())
	}
	tk, err := r.Seal(state(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.OpenTicket(tk)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ConsumeTicket(tk, st); err != nil {
		t.Fatal(err)
	}
	r.SetExternalKeys([]Key{k})
	if err := r.ConsumeTicket(tk, st); err == nil {
		t.Fatal("a used ticket was accepted again after the key set was replaced")
	}
	// External mode generates nothing: an empty set cannot seal.
	r.SetExternalKeys(nil)
	if _, err := r.Seal(state(clk.Now())); !errors.Is(err, ErrNoTicketKey) {
		t.Fatalf("empty external ring sealed: %v", err)
	}
	if k.IsErased() {
		t.Fatal("SetExternalKeys erased the caller's copy")
	}
}

// FuzzOpenRecord: ticket-key records are read from etcd, which any holder
// of etcd credentials may write: raw bytes, and bytes sealed under the
// right record key (reaching the plaintext decoder).
func FuzzOpenRecord(f *testing.F) {
	g := testSecret(f, 3)
	k, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	rec, err := SealRecord(g, "/st/", &k, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec, false)
	f.Add([]byte{1}, false)
	f.Add(make([]byte, recordPlainLen), true)
	aead, err := g.recordAEAD()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, sealPlain bool) {
		in := data
		if sealPlain {
			in = append([]byte{recordVersion}, make([]byte, 24)...)
			in = aead.Seal(in, in[1:], data, recordAD(k.Name, "/st/"))
		}
		got, err := OpenRecord(g, "/st/", k.Name, in)
		if err != nil {
			if !errors.Is(err, ErrRecordInvalid) {
				t.Fatalf("error %v does not wrap ErrRecordInvalid", err)
			}
			return
		}
		if got.IsErased() || got.EncryptDecrypt <= 0 || got.DecryptOnly <= 0 {
			t.Fatalf("opened an unusable key %+v", got)
		}
	})
}
