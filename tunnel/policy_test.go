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
// up to 160 s, past the 90 s a handshake is given.
func TestEverySessionConfAcceptsGivesAValidPolicy(t *testing.T) {
	k := mustKey(t)
	seconds := []int{1, 2, 5, 10, 30, 60, 120, 121, 180, 300, 600, 3600, 86400}
	accepted := 0
	for _, rekey := range seconds {
		for _, reject := range seconds {
			for _, keepalive := range seconds {
				src := fmt.Sprintf(`[interface]
name = "st0"
peer_id = "a"
private_key = %q
address = ["198.19.0.1/24"]
[session]
rekey_after = "%ds"
reject_after = "%ds"
keepalive = "%ds"
`, k.Base64(), rekey, reject, keepalive)
				cfg, err := conf.Parse("/etc/stunnel/st0.toml", []byte(src))
				if err != nil {
					continue // refused by check: fine, it never reaches New
				}
				accepted++
				if err := policyFrom(cfg).Validate(); err != nil {
					t.Errorf("rekey_after %ds, reject_after %ds, keepalive %ds: check accepts it, New refuses it: %v", rekey, reject, keepalive, err)
				}
			}
		}
	}
	if accepted == 0 {
		t.Fatal("conf accepted none of the grid: the test checks nothing")
	}
}
