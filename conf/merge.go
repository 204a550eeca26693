package conf

import (
	"fmt"
	"net/netip"
	"slices"
)

// ValidatePeer applies the per-peer checks of a [[peer]] table to a peer
// that came from elsewhere (the etcd directory): the same rules, one error
// naming the first problem.
func ValidatePeer(pr Peer) error {
	if err := checkPeerID(pr.ID); err != nil {
		return fmt.Errorf("id %q %v", pr.ID, err)
	}
	if pr.PublicKey.IsZero() {
		return fmt.Errorf("peer %q: public_key is missing or all zeros", pr.ID)
	}
	if pr.Endpoint != "" {
		if err := checkEndpoint(pr.Endpoint); err != nil {
			return fmt.Errorf("peer %q: endpoint %q: %v", pr.ID, pr.Endpoint, err)
		}
	}
	if len(pr.AllowedIPs) == 0 {
		return fmt.Errorf("peer %q: allowed_ips is empty; no traffic could reach or come from it", pr.ID)
	}
	for i, pfx := range pr.AllowedIPs {
		if !pfx.IsValid() || pfx.Addr().Is4In6() {
			return fmt.Errorf("peer %q: allowed_ips %s is not a valid prefix", pr.ID, pfx)
		}
		if pfx.Masked() != pfx {
			return fmt.Errorf("peer %q: allowed_ips %s has host bits set; write %s", pr.ID, pfx, pfx.Masked())
		}
		if slices.Contains(pr.AllowedIPs[:i], pfx) {
			return fmt.Errorf("peer %q: allowed_ips %s is listed twice", pr.ID, pfx)
		}
	}
	if pr.PersistentKeepalive < 0 || (pr.PersistentKeepalive > 0 && pr.PersistentKeepalive < MinKeepalive) {
		return fmt.Errorf("peer %q: persistent_keepalive %v is below %v and would flood the link", pr.ID, pr.PersistentKeepalive, MinKeepalive)
	}
	return nil
}

// ParseAllowedIP reads one allowed_ips entry as [[peer]] does: an address
// with its prefix length, no host bits.
func ParseAllowedIP(s string) (netip.Prefix, error) {
	pfx, err := parsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("allowed_ips %q %v", s, err)
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, fmt.Errorf("allowed_ips %q has host bits set; write %s", s, pfx.Masked())
	}
	return pfx, nil
}

// MergePeers returns a copy of c whose Peers are c's own followed by the
// extra peers (from the directory) that fit: each extra peer is checked like
// a [[peer]] (ValidatePeer) and against everything accepted before it, file
// peers first, then extra in the given order. A peer that does not fit is
// left out and named in skipped, one line each: the same ID as a file peer
// (with its line), this host's own key, a key already used, or
// allowed_ips overlapping an accepted peer's or holding this host's
// address. This host's own record (its
// peer_id) is left out silently. c is not modified. Cost is linear in the number of prefixes, so
// ten thousand peers merge in milliseconds.
func MergePeers(c *Config, extra []Peer) (merged *Config, skipped []error) {
	out := *c
	out.Peers = make([]Peer, len(c.Peers), len(c.Peers)+len(extra))
	copy(out.Peers, c.Peers)

	fileLine := make(map[string]int, len(c.Peers))
	keys := make(map[[32]byte]string, len(c.Peers)+len(extra))
	routes := newPrefixSet()
	for _, pr := range c.Peers {
		fileLine[pr.ID] = pr.Line
		keys[pr.PublicKey] = pr.ID
		for _, pfx := range pr.AllowedIPs {
			routes.add(pfx, pr.ID)
		}
	}
	own := c.Interface
	var accepted []int
	for _, pr := range extra {
		if pr.ID == own.PeerID {
			// A fleet's directory lists every host, this one too: not
			// a peer of itself, and not worth a complaint.
			continue
		}
		if err := mergeOne(&out, pr, own, fileLine, keys, routes); err != nil {
			skipped = append(skipped, err)
			continue
		}
		accepted = append(accepted, len(out.Peers))
		out.Peers = append(out.Peers, pr)
	}
	// An endpoint inside some peer's allowed_ips would send the peer's
	// encrypted packets into the tunnel itself; checked once all are known.
	drop := map[int]bool{}
	for _, i := range accepted {
		pr := out.Peers[i]
		ap, err := netip.ParseAddrPort(pr.Endpoint)
		if err != nil {
			continue
		}
		if owner, ok := routes.containing(netip.PrefixFrom(ap.Addr().WithZone(""), ap.Addr().BitLen())); ok {
			skipped = append(skipped, fmt.Errorf("directory peer %q: endpoint %s lies inside the allowed_ips of peer %q; its packets would loop into the tunnel (skipped)", pr.ID, pr.Endpoint, owner))
			drop[i] = true
		}
	}
	if len(drop) > 0 {
		kept := out.Peers[:0:0]
		for i, pr := range out.Peers {
			if !drop[i] {
				kept = append(kept, pr)
			}
		}
		out.Peers = kept
	}
	return &out, skipped
}

func mergeOne(out *Config, pr Peer, own Interface, fileLine map[string]int, keys map[[32]byte]string, routes *prefixSet) error {
	if err := ValidatePeer(pr); err != nil {
		return fmt.Errorf("directory peer: %v (skipped)", err)
	}
	if l, ok := fileLine[pr.ID]; ok {
		return fmt.Errorf("%s:%d: peer id %q is both a [[peer]] here and a directory record; the [[peer]] is used, remove one of them", out.Path, l, pr.ID)
	}
	if pr.PublicKey == own.PublicKey {
		return fmt.Errorf("directory peer %q has this host's own public key (skipped)", pr.ID)
	}
	if other, ok := keys[pr.PublicKey]; ok {
		return fmt.Errorf("directory peer %q has the public key of peer %q (skipped)", pr.ID, other)
	}
	for _, pfx := range pr.AllowedIPs {
		if owner, ok := routes.overlapping(pfx); ok {
			return fmt.Errorf("directory peer %q: allowed_ips %s overlaps those of peer %q; each address must belong to one peer (skipped)", pr.ID, pfx, owner)
		}
		for _, a := range own.Addresses {
			if pfx.Bits() > 0 && pfx.Contains(a.Addr()) {
				return fmt.Errorf("directory peer %q: allowed_ips %s contains this host's own address %s (skipped)", pr.ID, pfx, a.Addr())
			}
		}
	}
	keys[pr.PublicKey] = pr.ID
	for _, pfx := range pr.AllowedIPs {
		routes.add(pfx, pr.ID)
	}
	return nil
}

// prefixSet answers "does any added prefix overlap this one" in
// O(prefix length) map lookups. Two prefixes overlap exactly when one
// contains the other, so it keeps each added prefix and every supernet of
// it (its ancestors).
type prefixSet struct {
	exact     map[netip.Prefix]string // added prefix -> owner
	ancestors map[netip.Prefix]string // strict supernet of an added prefix -> one owner below it
}

func newPrefixSet() *prefixSet {
	return &prefixSet{exact: map[netip.Prefix]string{}, ancestors: map[netip.Prefix]string{}}
}

func (s *prefixSet) add(pfx netip.Prefix, owner string) {
	s.exact[pfx] = owner
	for b := pfx.Bits() - 1; b >= 0; b-- {
		up := netip.PrefixFrom(pfx.Addr(), b).Masked()
		if _, ok := s.ancestors[up]; ok {
			break // its supernets are there already
		}
		s.ancestors[up] = owner
	}
}

// containing finds an added prefix equal to or wider than pfx.
func (s *prefixSet) containing(pfx netip.Prefix) (string, bool) {
	for b := pfx.Bits(); b >= 0; b-- {
		if owner, ok := s.exact[netip.PrefixFrom(pfx.Addr(), b).Masked()]; ok {
			return owner, true
		}
	}
	return "", false
}

func (s *prefixSet) overlapping(pfx netip.Prefix) (string, bool) {
	if owner, ok := s.containing(pfx); ok {
		return owner, true
	}
	owner, ok := s.ancestors[pfx]
	return owner, ok
}

// CheckEndpoint applies [[peer]]'s endpoint rules (host:port, IP literal or
// DNS name) to an endpoint from elsewhere.
func CheckEndpoint(s string) error { return checkEndpoint(s) }
