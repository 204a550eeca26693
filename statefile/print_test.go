package statefile

import (
	"testing"

	"stunnel/internal/secretprint"
)

// TestPayloadNeverPrints: a state payload (sessions with their keys)
// prints its size, never its bytes.
func TestPayloadNeverPrints(t *testing.T) {
	raw := secretprint.Secret(64)
	p := Payload{Data: raw, CleanStop: true}
	secretprint.CheckEncoded(t, "Payload", p, raw, "64 bytes")
	secretprint.CheckEncoded(t, "*Payload", &p, raw, "64 bytes")
}
