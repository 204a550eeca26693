package tunnel

import (
	"fmt"
	"testing"

	"stunnel/conf"
)

// Every [session] that conf accepts (and so `stunnel check`) must give a
// policy that New accepts, or `up` fails on a config check called good.
// The grid crosses short and long key lifetimes with long keepalives: a
// keepalive of 600 s with reject_after 600 s once scaled the rekey timeout
// up to 160 s, past the 90 s a handshake is given. Sub-second lifetimes
// too: check once took reject_after = "200ms", which leaves no time for a
// handshake, and up then failed with a runtime error (exit 1, not 2).
func TestEverySessionConfAcceptsGivesAValidPolicy(t *testing.T) {
	k := mustKey(t)
	durations := []string{"1ms", "100ms", "200ms", "201ms", "300ms", "500ms",
		"1s", "2s", "5s", "10s", "30s", "60s", "120s", "121s", "180s", "300s", "600s", "3600s", "86400s"}
	accepted := 0
	for _, rekey := range durations {
		for _, reject := range durations {
			for _, keepalive := range durations {
				src := fmt.Sprintf(`[interface]
name = "st0"
peer_id = "a"
private_key = %q
address = ["198.19.0.1/24"]
[session]
rekey_after = %q
reject_after = %q
keepalive = %q
`, k.Base64(), rekey, reject, keepalive)
				cfg, err := conf.Parse("/etc/stunnel/st0.toml", []byte(src))
				if err != nil {
					continue // refused by check: fine, it never reaches New
				}
				accepted++
				if err := policyFrom(cfg).Validate(); err != nil {
					t.Errorf("rekey_after %s, reject_after %s, keepalive %s: check accepts it, New refuses it: %v", rekey, reject, keepalive, err)
				}
			}
		}
	}
	if accepted == 0 {
		t.Fatal("conf accepted none of the grid: the test checks nothing")
	}
}
