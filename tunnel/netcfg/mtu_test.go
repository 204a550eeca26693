package netcfg

import (
	"net/netip"
	"testing"
)

// The overhead is docs/PROTOCOL.md's: 16-byte data header, 16-byte tag,
// UDP, outer IP.
func TestOverhead(t *testing.T) {
	for addr, want := range map[string]int{"198.18.0.1": 60, "::ffff:198.18.0.1": 60, "fd00::1": 80} {
		if got := Overhead(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Overhead(%s) = %d, want %d", addr, got, want)
		}
	}
}
