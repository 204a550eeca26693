// Package allowedips is the cryptokey routing table: longest-prefix match of
// an IP address to the peer that owns it. The tunnel asks it twice per packet:
// on the way out (which peer gets this destination?) and on the way in (may
// this peer send from this source?).
package allowedips

import (
	"math/bits"
	"net/netip"
)

// Table maps IPv4 and IPv6 prefixes to values; IPv4 and IPv6 are separate
// tries. A 4-in-6 mapped address (::ffff:a.b.c.d) is an IPv6 address and is
// only ever looked up in the IPv6 trie: an IPv6 packet whose source is
// ::ffff:127.0.0.1 must not pass as if it came from an allowed IPv4 range,
// and an IPv6 destination must never be routed to an IPv4-only peer (as in
// WireGuard). The configuration refuses mapped prefixes, so in practice
// nothing matches mapped input.
//
// Concurrency: a Table is built once, then only read. Insert must not run
// concurrently with anything else; after the last Insert, any number of
// goroutines may call Lookup, Prefixes and Len at once without a lock. The
// tunnel builds a new Table on reload and swaps an atomic.Pointer to it, so
// the packet path never locks and never sees a half-built table.
//
// The zero Table is empty and ready to use.
type Table[T comparable] struct {
	v4, v6 *node[T]
	n      int // number of distinct prefixes stored
}

// node is one node of a path-compressed binary trie (PATRICIA). Its key holds
// the first cidr bits of a prefix, masked; for IPv4 the 32 bits sit in the top
// of key.hi. Nodes made only to split two branches carry no value (has false).
type node[T comparable] struct {
	key   u128
	cidr  uint8
	has   bool
	value T
	child [2]*node[T]
}

// Insert maps p to v. p is masked first (10.0.0.1/8 is 10.0.0.0/8); a later
// Insert of the same prefix replaces the value. A 4-in-6 mapped prefix stays
// an IPv6 prefix (it is never unmapped). An invalid prefix (the
// zero netip.Prefix, or one whose length is out of range) is ignored: the
// configuration is validated before it gets here, and the packet path must
// never panic.
func (t *Table[T]) Insert(p netip.Prefix, v T) {
	if !p.IsValid() {
		return
	}
	a, n := p.Addr(), p.Bits()
	root := &t.v6
	if a.Is4() {
		root = &t.v4
	}
	key := keyOf(a).mask(n)
	if insert(root, key, uint8(n), v) {
		t.n++
	}
}

// insert adds or replaces key/cidr under *p and reports whether it was new.
func insert[T comparable](p **node[T], key u128, cidr uint8, v T) bool {
	for {
		n := *p
		if n == nil {
			*p = &node[T]{key: key, cidr: cidr, has: true, value: v}
			return true
		}
		common := min(key.commonBits(n.key), int(n.cidr), int(cidr))
		switch {
		case common == int(n.cidr) && n.cidr == cidr: // same prefix
			added := !n.has
			n.has, n.value = true, v
			return added
		case common == int(n.cidr): // n covers the new prefix: go down
			p = &n.child[key.bit(int(n.cidr))]
			continue
		case common == int(cidr): // the new prefix covers n
			nn := &node[T]{key: key, cidr: cidr, has: true, value: v}
			nn.child[n.key.bit(int(cidr))] = n
			*p = nn
			return true
		default: // they part after common bits: a valueless fork
			fork := &node[T]{key: key.mask(common), cidr: uint8(common)}
			fork.child[key.bit(common)] = &node[T]{key: key, cidr: cidr, has: true, value: v}
			fork.child[n.key.bit(common)] = n
			*p = fork
			return true
		}
	}
}

// Lookup returns the value of the longest prefix containing a. A 4-in-6
// mapped address is looked up as IPv6, never unmapped. It does not allocate.
func (t *Table[T]) Lookup(a netip.Addr) (v T, ok bool) {
	n := t.v6
	if a.Is4() {
		n = t.v4
	} else if !a.Is6() {
		return v, false // the zero Addr
	}
	key := keyOf(a)
	for n != nil {
		if !key.matches(n.key, n.cidr) {
			break
		}
		if n.has {
			v, ok = n.value, true
		}
		if n.cidr == 128 {
			break // a full-length IPv6 prefix has no children
		}
		n = n.child[key.bit(int(n.cidr))]
	}
	return v, ok
}

// Prefixes returns the prefixes mapped to v, IPv4 first, each family in
// address order (a covering prefix before the ones inside it). It allocates;
// it is for status output and reload, not the packet path.
func (t *Table[T]) Prefixes(v T) []netip.Prefix {
	var out []netip.Prefix
	out = collect(t.v4, v, true, out)
	out = collect(t.v6, v, false, out)
	return out
}

func collect[T comparable](n *node[T], v T, is4 bool, out []netip.Prefix) []netip.Prefix {
	if n == nil {
		return out
	}
	if n.has && n.value == v {
		out = append(out, netip.PrefixFrom(n.key.addr(is4), int(n.cidr)))
	}
	out = collect(n.child[0], v, is4, out)
	return collect(n.child[1], v, is4, out)
}

// Len returns the number of distinct prefixes in the table.
func (t *Table[T]) Len() int { return t.n }

// u128 is an address as a 128-bit big-endian number; IPv4 sits in the top 32
// bits of hi so that bit i means the same thing (i-th bit from the left) for
// both families.
type u128 struct{ hi, lo uint64 }

func keyOf(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{hi: uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32}
	}
	b := a.As16()
	return u128{hi: be64(b[:8]), lo: be64(b[8:])}
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

func (k u128) addr(is4 bool) netip.Addr {
	if is4 {
		h := k.hi >> 32
		return netip.AddrFrom4([4]byte{byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(k.hi >> (56 - 8*i))
		b[8+i] = byte(k.lo >> (56 - 8*i))
	}
	return netip.AddrFrom16(b)
}

// mask keeps the first n bits (0 <= n <= 128).
func (k u128) mask(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{hi: k.hi &^ (^uint64(0) >> n)}
	case n < 128:
		return u128{hi: k.hi, lo: k.lo &^ (^uint64(0) >> (n - 64))}
	}
	return k
}

// matches reports whether k's first n bits equal prefix's (already masked).
func (k u128) matches(prefix u128, n uint8) bool {
	return k.mask(int(n)) == prefix
}

// bit returns bit i counted from the left (0 <= i < 128).
func (k u128) bit(i int) int {
	if i < 64 {
		return int(k.hi>>(63-i)) & 1
	}
	return int(k.lo>>(127-i)) & 1
}

// commonBits returns how many leading bits k and o share.
func (k u128) commonBits(o u128) int {
	if x := k.hi ^ o.hi; x != 0 {
		return bits.LeadingZeros64(x)
	}
	return 64 + bits.LeadingZeros64(k.lo^o.lo)
}
