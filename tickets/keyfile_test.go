package tickets

import (
	"strings"
	"testing"
	"time"
)

// With its fields out of order a key line may carry the secret in any field,
// and the parse error is printed by `stunnel check` and logged at start-up
// and on reload. The error must name FILE:LINE and the bad field, and never
// the secret, whichever field the secret landed in.
func TestKeyFileErrorNeverEchoesMisplacedSecret(t *testing.T) {
	k, _ := GenerateKey(nil, t0, time.Hour, time.Hour)
	line := strings.Split(string(MarshalKeyFile([]Key{k})), "\n")[1]
	f := strings.Fields(line)
	secret := f[1]
	// Swap SECRET with each other field in turn; the first is the common
	// mistake, NAME and SECRET swapped.
	for _, c := range []struct {
		other int
		field string
	}{{0, "field 1 (NAME)"}, {2, "field 2 (SECRET)"}, {3, "field 2 (SECRET)"}, {4, "field 2 (SECRET)"}} {
		g := append([]string(nil), f...)
		g[1], g[c.other] = g[c.other], g[1]
		_, err := ParseKeyFile("/etc/stunnel/tickets.key", []byte("# keys\n"+strings.Join(g, " ")+"\n"))
		if err == nil {
			t.Fatalf("swap 2<->%d: accepted", c.other+1)
		}
		msg := err.Error()
		if strings.Contains(msg, secret) {
			t.Fatalf("swap 2<->%d: the error carries the secret: %v", c.other+1, err)
		}
		if !strings.HasPrefix(msg, "/etc/stunnel/tickets.key:2: ") || !strings.Contains(msg, c.field) {
			t.Fatalf("swap 2<->%d: error %q does not name FILE:LINE and %s", c.other+1, msg, c.field)
		}
	}
	// Secrets in CREATED or a lifetime (the secret itself well-formed but
	// misplaced after a good one) are not quoted either.
	for i := 2; i < 5; i++ {
		g := append([]string(nil), f...)
		g[i] = secret
		_, err := ParseKeyFile("F", []byte(strings.Join(g, " ")+"\n"))
		if err == nil || strings.Contains(err.Error(), secret) || !strings.HasPrefix(err.Error(), "F:1: field ") {
			t.Fatalf("secret in field %d: %v", i+1, err)
		}
	}
}
