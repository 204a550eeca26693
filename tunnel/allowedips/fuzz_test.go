package allowedips

import (
	"net/netip"
	"testing"
)

// FuzzRouting checks the routing decision against a slow model: inserts of
// fuzzed prefixes (IPv4, IPv6 and 4-in-6 mapped, any length), then lookups
// of fuzzed addresses, must give the value of the longest matching prefix
// of the same family, and never cross families (issue 12: a mapped IPv6
// address is not an IPv4 address). Records are 18 bytes: a kind byte, a
// length byte and 16 address bytes, so the fuzzer builds tables of
// overlapping prefixes instead of random bytes that never match.
func FuzzRouting(f *testing.F) {
	rec := func(kind, bits byte, a netip.Addr) []byte {
		b := a.As16()
		return append([]byte{kind, bits}, b[:]...)
	}
	var seed []byte
	seed = append(seed, rec(0, 24, netip.MustParseAddr("198.19.2.0"))...)
	seed = append(seed, rec(0, 0, netip.MustParseAddr("0.0.0.0"))...)
	seed = append(seed, rec(1, 120, netip.MustParseAddr("::ffff:198.19.2.0"))...)
	seed = append(seed, rec(1, 64, netip.MustParseAddr("fd00::"))...)
	seed = append(seed, rec(2, 0, netip.MustParseAddr("::ffff:198.19.2.7"))...)
	seed = append(seed, rec(2, 0, netip.MustParseAddr("198.19.2.7"))...)
	seed = append(seed, rec(2, 0, netip.MustParseAddr("fd00::1"))...)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		type entry struct {
			p netip.Prefix
			v int
		}
		var tb Table[int]
		var model []entry
		for i := 0; len(data) >= 18; i++ {
			kind, bits := data[0]%3, int(data[1])
			var a16 [16]byte
			copy(a16[:], data[2:18])
			data = data[18:]
			a := netip.AddrFrom16(a16)
			if kind == 0 || kind == 2 && a16[0]&1 == 0 {
				a = netip.AddrFrom4([4]byte(a16[12:]))
			}
			if kind == 2 { // a lookup
				v, ok := tb.Lookup(a)
				best, want, found := -1, 0, false
				for _, e := range model {
					if e.p.Addr().Is4() == a.Is4() && e.p.Contains(a) && e.p.Bits() >= best {
						best, want, found = e.p.Bits(), e.v, true
					}
				}
				if ok != found || v != want {
					t.Fatalf("Lookup(%v) = %d, %v; the model says %d, %v", a, v, ok, want, found)
				}
				continue
			}
			p, err := a.Prefix(bits % (a.BitLen() + 1))
			if err != nil {
				t.Fatal(err)
			}
			tb.Insert(p, i)
			replaced := false
			for j := range model {
				if model[j].p == p {
					model[j].v, replaced = i, true
				}
			}
			if !replaced {
				model = append(model, entry{p, i})
			}
			if tb.Len() != len(model) {
				t.Fatalf("Len() = %d, model %d", tb.Len(), len(model))
			}
		}
	})
}
