package tickets

import (
	"bytes"
	"testing"
	"time"

	"stunnel/internal/secretprint"
)

// TestKeysNeverPrint: a ticket key prints its name and a group secret a
// placeholder, never the secret. fmt printed both secrets, unexported
// fields, byte by byte.
func TestKeysNeverPrint(t *testing.T) {
	raw := secretprint.Secret(SecretSize)
	rng := bytes.NewReader(append(bytes.Repeat([]byte{0x11}, NameSize), raw...))
	k, err := GenerateKey(rng, time.Now(), time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Erase()
	secretprint.Check(t, "Key", k, raw, k.NameHex())
	secretprint.Check(t, "*Key", &k, raw, k.NameHex())
	// encoding/json skips unexported fields: only the name and times.
	secretprint.CheckEncoded(t, "Key", k, raw, "")
	g, err := NewGroupSecret(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Zero()
	secretprint.Check(t, "GroupSecret", *g, raw, "(group secret)")
	secretprint.Check(t, "*GroupSecret", g, raw, "(group secret)")
	secretprint.CheckEncoded(t, "*GroupSecret", g, raw, "")
}
