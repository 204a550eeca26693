package conf

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// manyPeers is a valid config with n peers, each with an overlay /32, a
// /24 LAN behind it, an IPv6 /128 and an underlay endpoint: the shape of a
// hub with many sites.
func manyPeers(t testing.TB, n int) []byte {
	var b strings.Builder
	b.WriteString(expand(t, `[interface]
name = "st0"
peer_id = "hub"
private_key = "PRIV_A"
listen_port = 51820
address = ["100.64.0.1/10", "fd00:64::1/64"]
`))
	for i := range n {
		sum := sha256.Sum256(fmt.Appendf(nil, "peer %d", i))
		fmt.Fprintf(&b, `
[[peer]]
id = "p%d"
public_key = "%s"
endpoint = "198.18.%d.%d:51820"
allowed_ips = ["100.64.%d.%d/32", "10.%d.%d.0/24", "fd00:64::%x/128"]
`, i, base64.StdEncoding.EncodeToString(sum[:]), 1+i/250, 1+i%250, i/250, 2+i%250, i/256, i%256, i+2)
	}
	return []byte(b.String())
}

// TestCheckScale prints how long validating 1,000 and 10,000 peers takes
// (issue 21: linear, 10,000 under 0.3 s). No timed assertion: the machine
// is shared; the figure is for docs/PERFORMANCE.md.
func TestCheckScale(t *testing.T) {
	sizes := []int{1000, 10000}
	if testing.Short() {
		sizes = sizes[:1]
	}
	for _, n := range sizes {
		data := manyPeers(t, n)
		cpu0, start := cpuTime(t), time.Now()
		c, err := Parse("/etc/stunnel/hub.toml", data)
		el, cpu := time.Since(start), cpuTime(t)-cpu0
		if err != nil {
			t.Fatalf("%d peers: %v", n, err)
		}
		if len(c.Peers) != n {
			t.Fatalf("%d peers parsed, want %d", len(c.Peers), n)
		}
		t.Logf("check of %d peers: %v wall, %v CPU (%.1f us CPU per peer)", n, el.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(n))
	}
}

// cpuTime is the process's user + system CPU so far: on a loaded machine
// the wall time also counts the waits for a core.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkCheck1000Peers(b *testing.B) {
	data := manyPeers(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Parse("/etc/stunnel/hub.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}
