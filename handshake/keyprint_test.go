package handshake

import (
	"testing"

	"stunnel/internal/secretprint"
)

// TestKeysNeverPrint: a private or pre-shared key given to fmt with any
// verb, to encoding/json, or to either of slog's handlers, alone or inside
// a struct, shows its placeholder and none of its bytes. %d of a key
// printed its 32 numbers, and JSON (slog's JSON handler included) a list
// of them.
func TestKeysNeverPrint(t *testing.T) {
	raw := secretprint.Secret(KeySize)
	priv, psk := PrivateKey(raw), PresharedKey(raw)
	for _, c := range []struct {
		name string
		v    any
		want string
	}{
		{"PrivateKey", priv, "(private key)"},
		{"*PrivateKey", &priv, "(private key)"},
		{"PresharedKey", psk, "(preshared key)"},
		{"*PresharedKey", &psk, "(preshared key)"},
		{"PeerInfo", PeerInfo{PresharedKey: psk}, "(preshared key)"},
	} {
		secretprint.CheckEncoded(t, c.name, c.v, raw, c.want)
	}
	secretprint.Check(t, "MemoryKey", MemoryKey(priv), raw, "(private key)")
	secretprint.Check(t, "Config", Config{PrivateKey: priv}, raw, "(private key)")
}

// TestSessionsNeverPrintKeys: what holds a handshake's keys (the session,
// a ticket's state, a handshake in flight with its ephemeral key and
// pre-shared key) prints its peer and no key. fmt printed a Session's data
// keys and resumption secret byte by byte, and the unexported ephemeral
// and pre-shared keys of an Initiation or Resumption too.
func TestSessionsNeverPrintKeys(t *testing.T) {
	raw := secretprint.Secret(KeySize)
	var key [32]byte
	copy(key[:], raw)
	sess := Session{PeerID: "site-b", SendKey: key, RecvKey: key, SessionID: key, ResumptionSecret: key}
	secretprint.CheckEncoded(t, "Session", sess, raw, "site-b")
	secretprint.CheckEncoded(t, "*Session", &sess, raw, "site-b")
	st := TicketState{PeerID: "site-b", ResumptionSecret: key}
	secretprint.CheckEncoded(t, "TicketState", st, raw, "site-b")
	secretprint.CheckEncoded(t, "*TicketState", &st, raw, "site-b")

	_, a, b := pair(t)
	info := a.infoOf(b)
	info.PresharedKey = PresharedKey(key)
	in, err := NewInitiation(a.cfg, info, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Zero()
	secretprint.Check(t, "Initiation (pre-shared key)", in, raw, "site-b")
	secretprint.Check(t, "Initiation (ephemeral key)", in, in.eph[:], "site-b")
	r, err := NewResumption(a.cfg, info, []byte("ticket"), &key, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Zero()
	secretprint.Check(t, "Resumption (its PSK)", r, r.psk[:], "site-b")
	secretprint.Check(t, "Resumption (ephemeral key)", r, r.eph[:], "site-b")
}
