package rekey

import (
	"testing"

	"stunnel/internal/secretprint"
)

// TestKeypairStateNeverPrintsKeys: a saved keypair prints its indices and
// counter, never its keys, which fmt and encoding/json wrote byte by byte.
func TestKeypairStateNeverPrintsKeys(t *testing.T) {
	raw := secretprint.Secret(32)
	s := KeypairState{LocalIndex: 0x01020304, SendCounter: 42}
	copy(s.SendKey[:], raw)
	copy(s.RecvKey[:], raw)
	secretprint.CheckEncoded(t, "KeypairState", s, raw, "counter 42")
	secretprint.CheckEncoded(t, "*KeypairState", &s, raw, "counter 42")
}
