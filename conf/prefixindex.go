package conf

import (
	"net/netip"
	"slices"
)

// prefixIndex finds, among every peer's allowed_ips, the prefixes that
// overlap a given prefix or contain a given address, without comparing
// pairs: checking 10,000 peers pair by pair took a minute (issue 21).
//
// Two prefixes overlap when one contains the other. The ones that contain
// a prefix p are found by a map lookup of p's address masked to each
// prefix length that occurs in the config (a handful in practice); the ones
// p contains (p itself included) lie next to each other in the list sorted
// by (address, length), starting where p would sort. Either way the cost is
// the lengths looked up plus the overlaps found, not the number of peers.
type prefixIndex struct {
	sorted []prefixRef                  // every prefix, by address then length
	exact  map[netip.Prefix][]prefixRef // by prefix, in (peer, position) order
	lens4  []int                        // prefix lengths in use, ascending
	lens6  []int
}

// prefixRef is one configured prefix: c.Peers[peer].AllowedIPs[pos].
type prefixRef struct {
	pfx       netip.Prefix
	peer, pos int
}

func newPrefixIndex(c *Config) *prefixIndex {
	x := &prefixIndex{exact: map[netip.Prefix][]prefixRef{}}
	for i, pr := range c.Peers {
		for k, p := range pr.AllowedIPs {
			if !p.IsValid() {
				continue
			}
			p = p.Masked()
			r := prefixRef{p, i, k}
			x.sorted = append(x.sorted, r)
			x.exact[p] = append(x.exact[p], r)
			if p.Addr().Is4() {
				x.lens4 = append(x.lens4, p.Bits())
			} else {
				x.lens6 = append(x.lens6, p.Bits())
			}
		}
	}
	slices.SortFunc(x.sorted, func(a, b prefixRef) int { return comparePrefix(a.pfx, b.pfx) })
	slices.Sort(x.lens4)
	x.lens4 = slices.Compact(x.lens4)
	slices.Sort(x.lens6)
	x.lens6 = slices.Compact(x.lens6)
	return x
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func (x *prefixIndex) lens(a netip.Addr) []int {
	if a.Is4() {
		return x.lens4
	}
	return x.lens6
}

// overlapping returns the prefixes of peers before peer `before` that
// overlap p, in the order a pair-by-pair scan finds them: by peer, then by
// position in its allowed_ips.
func (x *prefixIndex) overlapping(p netip.Prefix, before int) []prefixRef {
	if !p.IsValid() {
		return nil
	}
	p = p.Masked()
	var out []prefixRef
	// Shorter prefixes that contain p.
	for _, l := range x.lens(p.Addr()) {
		if l >= p.Bits() {
			break
		}
		out = appendBefore(out, x.exact[netip.PrefixFrom(p.Addr(), l).Masked()], before)
	}
	// p and the prefixes inside it: contiguous from where p sorts.
	i, _ := slices.BinarySearchFunc(x.sorted, p, func(r prefixRef, p netip.Prefix) int { return comparePrefix(r.pfx, p) })
	for ; i < len(x.sorted) && p.Contains(x.sorted[i].pfx.Addr()); i++ {
		if x.sorted[i].peer < before {
			out = append(out, x.sorted[i])
		}
	}
	sortRefs(out)
	return out
}

// containing returns every prefix of more than zero bits that contains a,
// by peer, then by position.
func (x *prefixIndex) containing(a netip.Addr) []prefixRef {
	var out []prefixRef
	for _, l := range x.lens(a) {
		if l == 0 || l > a.BitLen() {
			continue
		}
		out = appendBefore(out, x.exact[netip.PrefixFrom(a, l).Masked()], -1)
	}
	sortRefs(out)
	return out
}

// appendBefore appends the refs of peers before `before` (-1: all).
func appendBefore(out, refs []prefixRef, before int) []prefixRef {
	for _, r := range refs {
		if before < 0 || r.peer < before {
			out = append(out, r)
		}
	}
	return out
}

func sortRefs(rs []prefixRef) {
	if len(rs) < 2 {
		return
	}
	slices.SortFunc(rs, func(a, b prefixRef) int {
		if a.peer != b.peer {
			return a.peer - b.peer
		}
		return a.pos - b.pos
	})
}
