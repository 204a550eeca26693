package allowedips

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestLookup(t *testing.T) {
	var tb Table[string]
	for _, e := range []struct{ p, v string }{
		{"198.19.0.0/16", "wide"},
		{"198.19.2.0/24", "site"},
		{"198.19.2.7/32", "host"},
		{"198.19.128.0/17", "upper"},
		{"fd00::/8", "ula"},
		{"fd00:1::/64", "net6"},
		{"fd00:1::1/128", "host6"},
		{"fd00:1::1:0/112", "mid6"},
	} {
		tb.Insert(pfx(e.p), e.v)
	}
	for _, c := range []struct {
		a    string
		want string // "" means no match
	}{
		{"198.19.2.7", "host"},
		{"198.19.2.8", "site"},
		{"198.19.2.0", "site"},
		{"198.19.2.255", "site"},
		{"198.19.3.1", "wide"},
		{"198.19.0.0", "wide"},
		{"198.19.127.255", "wide"},
		{"198.19.128.0", "upper"},
		{"198.19.255.255", "upper"},
		{"198.20.0.0", ""},
		{"198.18.255.255", ""},
		{"0.0.0.0", ""},
		{"255.255.255.255", ""},
		{"fd00:1::1", "host6"},
		{"fd00:1::2", "net6"},
		{"fd00:1::1:5", "mid6"},
		{"fd00:1:0:0:1::", "net6"},
		{"fd00:2::1", "ula"},
		{"fdff:ffff::", "ula"},
		{"fe00::", ""},
		{"fc00::", ""},
		{"::", ""},
		// 4-in-6 mapped input is IPv6: it never matches an IPv4 prefix.
		{"::ffff:198.19.2.7", ""},
		{"::ffff:198.20.0.1", ""},
		// IPv6 with a zone still matches by address.
		{"fd00:1::2%eth0", "net6"},
	} {
		v, ok := tb.Lookup(addr(c.a))
		if ok != (c.want != "") || v != c.want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", c.a, v, ok, c.want)
		}
	}
	if got := tb.Len(); got != 8 {
		t.Errorf("Len() = %d, want 8", got)
	}
}

func TestDefaultRoutesAndFamilySeparation(t *testing.T) {
	var tb Table[int]
	tb.Insert(pfx("0.0.0.0/0"), 4)
	for _, a := range []string{"0.0.0.0", "198.19.1.1", "255.255.255.255"} {
		if v, ok := tb.Lookup(addr(a)); !ok || v != 4 {
			t.Errorf("v4 /0: Lookup(%s) = %d, %v; want 4", a, v, ok)
		}
	}
	// An IPv4 default route must not catch IPv6, not even ::a.b.c.d or
	// ::ffff:a.b.c.d.
	for _, a := range []string{"::", "::1", "::198.19.1.1", "::ffff:1.2.3.4", "fd00::1", "ffff::"} {
		if v, ok := tb.Lookup(addr(a)); ok {
			t.Errorf("v4 /0 matched IPv6 %s (value %d)", a, v)
		}
	}
	tb.Insert(pfx("::/0"), 6)
	for _, a := range []string{"::", "::198.19.1.1", "::ffff:1.2.3.4", "fd00::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if v, ok := tb.Lookup(addr(a)); !ok || v != 6 {
			t.Errorf("v6 /0: Lookup(%s) = %d, %v; want 6", a, v, ok)
		}
	}
	if v, _ := tb.Lookup(addr("198.19.1.1")); v != 4 {
		t.Errorf("IPv4 address answered by the IPv6 default: %d", v)
	}
	var zero netip.Addr
	if _, ok := tb.Lookup(zero); ok {
		t.Error("the zero Addr matched")
	}
}

func TestInsertMasksAndReplaces(t *testing.T) {
	var tb Table[string]
	tb.Insert(pfx("198.19.2.99/24"), "a") // not masked on input
	tb.Insert(pfx("198.19.2.0/24"), "b")  // same prefix: replaces
	if tb.Len() != 1 {
		t.Fatalf("Len() = %d after replacing, want 1", tb.Len())
	}
	if v, _ := tb.Lookup(addr("198.19.2.1")); v != "b" {
		t.Errorf("after replace got %q, want b", v)
	}
	if got := tb.Prefixes("b"); !slices.Equal(got, []netip.Prefix{pfx("198.19.2.0/24")}) {
		t.Errorf("Prefixes(b) = %v", got)
	}
	if got := tb.Prefixes("a"); len(got) != 0 {
		t.Errorf("Prefixes(a) = %v, want none", got)
	}
	// Inserting a covering prefix after the narrower one (the other order
	// of the trie split) must keep both.
	tb.Insert(pfx("198.19.0.0/16"), "c")
	tb.Insert(pfx("198.19.0.0/16"), "c")
	if v, _ := tb.Lookup(addr("198.19.2.1")); v != "b" {
		t.Errorf("narrower prefix lost after covering insert: %q", v)
	}
	if v, _ := tb.Lookup(addr("198.19.3.1")); v != "c" {
		t.Errorf("covering prefix: got %q, want c", v)
	}
	if tb.Len() != 2 {
		t.Errorf("Len() = %d, want 2", tb.Len())
	}
	// Invalid input is ignored, not a panic.
	tb.Insert(netip.Prefix{}, "bad")
	tb.Insert(netip.PrefixFrom(addr("198.19.0.1"), 33), "bad")
	if tb.Len() != 2 || len(tb.Prefixes("bad")) != 0 {
		t.Errorf("invalid prefix was stored")
	}
}

// TestMappedNeverUnmapped: an IPv6 packet's addresses are IPv6 addresses.
// A peer allowed 0.0.0.0/0 must not own ::ffff:127.0.0.1 (the spoofing hole
// of issue 12), and a mapped prefix stays IPv6 on insert.
func TestMappedNeverUnmapped(t *testing.T) {
	var tb Table[string]
	tb.Insert(pfx("0.0.0.0/0"), "v4peer")
	for _, a := range []string{"::ffff:127.0.0.1", "::ffff:198.19.5.9", "::ffff:0.0.0.0"} {
		if v, ok := tb.Lookup(addr(a)); ok {
			t.Errorf("Lookup(%s) = %q: a mapped IPv6 address matched an IPv4 prefix", a, v)
		}
	}
	if v, ok := tb.Lookup(addr("127.0.0.1")); !ok || v != "v4peer" {
		t.Errorf("Lookup(127.0.0.1) = %q, %v; want v4peer", v, ok)
	}
	tb.Insert(pfx("::ffff:198.19.5.0/120"), "mapped")
	if v, ok := tb.Lookup(addr("198.19.5.9")); !ok || v != "v4peer" {
		t.Errorf("a mapped prefix captured IPv4 input: %q %v", v, ok)
	}
	if v, ok := tb.Lookup(addr("::ffff:198.19.5.9")); !ok || v != "mapped" {
		t.Errorf("mapped input should match the mapped IPv6 prefix: %q %v", v, ok)
	}
	if got := tb.Prefixes("mapped"); !slices.Equal(got, []netip.Prefix{pfx("::ffff:198.19.5.0/120")}) {
		t.Errorf("Prefixes = %v, want [::ffff:198.19.5.0/120]", got)
	}
	tb.Insert(pfx("::/0"), "v6peer")
	if v, ok := tb.Lookup(addr("::ffff:10.0.0.1")); !ok || v != "v6peer" {
		t.Errorf("mapped input should route to the IPv6 default: %q %v", v, ok)
	}
}

func TestPrefixesOrder(t *testing.T) {
	var tb Table[int]
	in := []string{"fd00:1::/64", "198.19.9.0/24", "198.19.0.0/16", "198.19.1.1/32", "fd00::/8", "198.18.0.0/24"}
	for _, p := range in {
		tb.Insert(pfx(p), 1)
	}
	tb.Insert(pfx("198.19.2.0/24"), 2)
	want := []netip.Prefix{pfx("198.18.0.0/24"), pfx("198.19.0.0/16"), pfx("198.19.1.1/32"),
		pfx("198.19.9.0/24"), pfx("fd00::/8"), pfx("fd00:1::/64")}
	if got := tb.Prefixes(1); !slices.Equal(got, want) {
		t.Errorf("Prefixes(1) = %v\nwant %v", got, want)
	}
}

// ref is the obviously correct linear scan the trie is compared against.
type ref struct {
	p []netip.Prefix
	v []int
}

func (r *ref) insert(p netip.Prefix, v int) {
	p = p.Masked()
	for i := range r.p {
		if r.p[i] == p {
			r.v[i] = v
			return
		}
	}
	r.p, r.v = append(r.p, p), append(r.v, v)
}

func (r *ref) lookup(a netip.Addr) (int, bool) {
	best, v := -1, 0
	for i, p := range r.p {
		if p.Contains(a) && p.Bits() > best {
			best, v = p.Bits(), r.v[i]
		}
	}
	return v, best >= 0
}

// randAddr draws from a few narrow ranges so random prefixes overlap a lot.
func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		b[0], b[1] = 0xfd, byte(r.IntN(4))
		for i := 2; i < 16; i++ {
			b[i] = byte(r.IntN(4)) << 6
		}
		b[15] |= byte(r.IntN(256))
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{198, 19, byte(r.IntN(4)), byte(r.IntN(256))})
}

func TestRandomAgainstLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var tb Table[int]
		var rf ref
		n := 1 + r.IntN(300)
		for i := 0; i < n; i++ {
			v6 := r.IntN(2) == 0
			a := randAddr(r, v6)
			bitsN := 14 + r.IntN(19) // 14..32
			if v6 {
				bitsN = 6 + r.IntN(123) // 6..128
			}
			p := netip.PrefixFrom(a, bitsN)
			tb.Insert(p, i)
			rf.insert(p, i)
		}
		if tb.Len() != len(rf.p) {
			t.Fatalf("round %d: Len() = %d, reference has %d", round, tb.Len(), len(rf.p))
		}
		for i := 0; i < 2000; i++ {
			a := randAddr(r, r.IntN(2) == 0)
			gv, gok := tb.Lookup(a)
			wv, wok := rf.lookup(a)
			if gv != wv || gok != wok {
				t.Fatalf("round %d: Lookup(%s) = %d, %v; linear scan says %d, %v", round, a, gv, gok, wv, wok)
			}
		}
		// Every stored prefix comes back from Prefixes of its value.
		for i, p := range rf.p {
			if got := tb.Prefixes(rf.v[i]); !slices.Contains(got, p) {
				t.Fatalf("round %d: Prefixes(%d) = %v lacks %s", round, rf.v[i], got, p)
			}
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tb := benchTable(1000)
	a := addr("198.19.3.77")
	b := addr("fd00::1")
	if n := testing.AllocsPerRun(1000, func() { tb.Lookup(a); tb.Lookup(b) }); n != 0 {
		t.Errorf("Lookup allocates %.1f times per call", n)
	}
}
