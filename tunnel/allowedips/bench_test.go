package allowedips

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// benchTable holds n prefixes shaped like a real config: per peer one /32
// overlay host and one /24 site (half of them), plus a few IPv6 /128s.
func benchTable(n int) *Table[int] {
	var tb Table[int]
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; tb.Len() < n; i++ {
		switch i % 3 {
		case 0:
			tb.Insert(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}), 32), i)
		case 1:
			tb.Insert(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(1 + r.IntN(254)), 0}), 24), i)
		default:
			var b [16]byte
			b[0], b[14], b[15] = 0xfd, byte(i>>8), byte(i)
			tb.Insert(netip.PrefixFrom(netip.AddrFrom16(b), 128), i)
		}
	}
	return &tb
}

func benchLookup(b *testing.B, n int) {
	tb := benchTable(n)
	r := rand.New(rand.NewPCG(5, 6))
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 19, byte(r.IntN(256)), byte(r.IntN(256))})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tb.Lookup(addrs[i&1023])
	}
}

func BenchmarkLookup10(b *testing.B)   { benchLookup(b, 10) }
func BenchmarkLookup1000(b *testing.B) { benchLookup(b, 1000) }
