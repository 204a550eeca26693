package conf

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"

	"stunnel/handshake"
)

// ValidatePeer applies the per-peer checks of a [[peer]] table to a peer
// that came from elsewhere (the etcd directory): the same rules, one error
// naming the first problem.
func ValidatePeer(pr Peer) error {
	if err := checkPeerID(pr.ID); err != nil {
		return fmt.Errorf("id %s %v", QuoteID(pr.ID), err) // bounded: an ID from etcd may be huge
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
	pfx, err := parseNetwork(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("allowed_ips %q %v", s, err)
	}
	return pfx, nil
}

// ErrFileOverrides is wrapped by MergePeers' skip for a directory record
// whose ID is a [[peer]] of the file with the same public key: the way to
// give a fleet host a local setting, such as its /0 for an exit, while its
// record stays in etcd for the other hosts. Not a conflict, so callers keep
// it apart from the records not used (errors.Is).
var ErrFileOverrides = errors.New("the file's [[peer]] is used in place of the directory record")

// MergePeers returns a copy of c whose Peers are c's own followed by the
// extra peers (from the directory) that fit: each extra peer is checked like
// a [[peer]] (ValidatePeer) and against everything accepted before it, file
// peers first, then extra in the given order; the first comer wins, so a
// peer is never dropped once accepted and nothing is reserved for a peer
// that is not used. A peer that does not fit is left out and named in
// skipped, one line each: the same ID as a file peer (with its line; with
// the same public key too the error wraps ErrFileOverrides), this
// host's own key, a key already used, allowed_ips outside [directory]'s
// records_within (when set), allowed_ips overlapping an accepted peer's or
// holding this host's address, an endpoint inside an accepted
// peer's allowed_ips or its own (a /0 aside), allowed_ips (a /0 aside)
// holding an accepted peer's endpoint (that peer's encrypted packets would
// loop into the tunnel, as crossCheck refuses in one file), or allowed_ips
// holding an etcd endpoint of [directory] given as a non-loopback IP
// address, a /0 included. Otherwise a /0 loops nothing: a file peer's is a
// full tunnel, which exempts the daemon's own packets with a firewall
// mark, and a record's is not routed at all (the daemon makes a full
// tunnel only for the file's).
// This host's own record (its peer_id) is left out silently. The records
// used are marked FromDirectory. c is not modified. Cost is linear in the
// number of prefixes and endpoints, so ten thousand peers merge in
// milliseconds.
func MergePeers(c *Config, extra []Peer) (merged *Config, skipped []error) {
	out := *c
	out.Peers = make([]Peer, len(c.Peers), len(c.Peers)+len(extra))
	copy(out.Peers, c.Peers)

	m := &merger{
		path:   c.Path,
		own:    c.Interface,
		file:   make(map[string]filePeer, len(c.Peers)),
		keys:   make(map[[32]byte]string, len(c.Peers)+len(extra)),
		routes: newPrefixSet(),
		eps:    newEndpointIndex(extra, len(c.Peers)+len(extra)),
		etcd:   etcdAddrs(c.Directory),
	}
	if c.Directory != nil {
		m.within = c.Directory.RecordsWithin
	}
	for _, pr := range c.Peers {
		m.file[pr.ID] = filePeer{pr.Line, pr.PublicKey}
		where := ""
		if pr.Line > 0 {
			where = fmt.Sprintf("%s:%d", c.Path, pr.Line)
		}
		m.scratch = appendEndpoints(m.scratch[:0], pr)
		m.accept(pr, where)
	}
	for _, pr := range extra {
		if pr.ID == m.own.PeerID {
			// A fleet's directory lists every host, this one too: not
			// a peer of itself, and not worth a complaint.
			continue
		}
		if err := m.check(pr); err != nil {
			skipped = append(skipped, err)
			continue
		}
		m.accept(pr, "") // check left pr's endpoints in m.scratch
		pr.FromDirectory = true
		out.Peers = append(out.Peers, pr)
	}
	return &out, skipped
}

// merger holds what the peers accepted so far claim.
type merger struct {
	path    string // the config file, for a [[peer]]'s FILE:LINE
	own     Interface
	file    map[string]filePeer // file peer ID -> its line and key
	keys    map[[32]byte]string // public key -> peer ID
	routes  *prefixSet          // allowed_ips -> peer ID
	eps     endpointIndex       // the accepted peers' IP endpoints
	etcd    []netip.Addr        // [directory] etcd endpoints given as IP addresses
	within  []netip.Prefix      // [directory] records_within; none: any
	scratch []netip.AddrPort    // one peer's endpoints, reused
}

// filePeer is what check needs of a [[peer]] whose ID a record may repeat:
// only the public key, so the merge holds no copy of a preshared key that
// zeroConfigSecrets would miss.
type filePeer struct {
	line int
	key  handshake.PublicKey
}

// accept claims pr's key, allowed_ips and endpoints (in m.scratch, parsed
// once); where is the file position of a [[peer]], "" for a directory
// record.
func (m *merger) accept(pr Peer, where string) {
	m.keys[pr.PublicKey] = pr.ID
	for _, pfx := range pr.AllowedIPs {
		m.routes.add(pfx, pr.ID)
	}
	for _, ep := range m.scratch {
		m.eps.add(endpointRef{ep, pr.ID, where})
	}
}

// check is nil if the directory record pr fits with everything accepted,
// else why not, in one line.
func (m *merger) check(pr Peer) error {
	if err := ValidatePeer(pr); err != nil {
		return fmt.Errorf("directory peer: %v (skipped)", err)
	}
	if f, ok := m.file[pr.ID]; ok {
		if f.key == pr.PublicKey {
			return fmt.Errorf("%s:%d: peer id %q: %w, which has the same public key", m.path, f.line, pr.ID, ErrFileOverrides)
		}
		return fmt.Errorf("%s:%d: peer id %q is both a [[peer]] here and a directory record with another public key; the [[peer]] is used, remove one of them", m.path, f.line, pr.ID)
	}
	if pr.PublicKey == m.own.PublicKey {
		return fmt.Errorf("directory peer %q has this host's own public key (skipped)", pr.ID)
	}
	if other, ok := m.keys[pr.PublicKey]; ok {
		return fmt.Errorf("directory peer %q has the public key of peer %q (skipped)", pr.ID, other)
	}
	for _, pfx := range pr.AllowedIPs {
		if len(m.within) > 0 && !slices.ContainsFunc(m.within, func(w netip.Prefix) bool { return w.Bits() <= pfx.Bits() && w.Contains(pfx.Addr()) }) {
			return fmt.Errorf("directory peer %q: allowed_ips %s is not inside records_within of [directory] (skipped)", pr.ID, pfx)
		}
		if owner, ok := m.routes.overlapping(pfx); ok {
			return fmt.Errorf("directory peer %q: allowed_ips %s overlaps those of peer %q; each address must belong to one peer (skipped)", pr.ID, pfx, owner)
		}
		for _, a := range m.own.Addresses {
			if pfx.Bits() > 0 && pfx.Contains(a.Addr()) {
				return fmt.Errorf("directory peer %q: allowed_ips %s contains this host's own address %s (skipped)", pr.ID, pfx, a.Addr())
			}
		}
		// A record's /0 is never routed (no full tunnel is made for it),
		// so it cannot take the packets to any endpoint.
		if pfx.Bits() > 0 {
			if ep, ok := m.eps.in(pfx); ok {
				return fmt.Errorf("directory peer %q: allowed_ips %s contains %s; that peer's encrypted packets would loop into the tunnel (skipped)", pr.ID, pfx, ep)
			}
		}
		// A record that captures the way to etcd could not be withdrawn
		// through etcd. A /0 is not routed, but still takes what the host
		// routes into the tunnel, such as an etcd inside the prefix of
		// this host's own address; it is refused for any etcd address,
		// more than needed.
		for _, a := range m.etcd {
			if pfx.Contains(a) {
				return fmt.Errorf("directory peer %q: allowed_ips %s contains etcd endpoint %s of [directory]; the directory would be reachable only through that peer (skipped)", pr.ID, pfx, a)
			}
		}
	}
	// An endpoint inside a peer's allowed_ips, this one's included, would
	// send the peer's encrypted packets into the tunnel itself. A /0 does
	// not count: a file peer's is a full tunnel, whose packets to peers the
	// daemon exempts with a firewall mark (as crossCheck's endpointLoop has
	// it for files), and a record's is never routed.
	m.scratch = appendEndpoints(m.scratch[:0], pr)
	for _, ep := range m.scratch {
		host := netip.PrefixFrom(ep.Addr(), ep.Addr().BitLen())
		owner, ok := m.routes.containingAbove(host, 1)
		if !ok && slices.ContainsFunc(pr.AllowedIPs, func(p netip.Prefix) bool { return p.Bits() > 0 && p.Contains(ep.Addr()) }) {
			owner, ok = pr.ID, true
		}
		if ok {
			return fmt.Errorf("directory peer %q: endpoint %s lies inside the allowed_ips of peer %q; its packets would loop into the tunnel (skipped)", pr.ID, ep.String(), owner)
		}
	}
	return nil
}

// appendEndpoints appends pr's endpoints written as IP addresses (DNS names
// cannot be checked before they resolve), zones dropped, to out.
func appendEndpoints(out []netip.AddrPort, pr Peer) []netip.AddrPort {
	add := func(s string) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().WithZone("").Unmap(), ap.Port()))
		}
	}
	if len(pr.Endpoints) == 0 && pr.Endpoint != "" {
		add(pr.Endpoint) // a directory record has the one
	}
	for _, s := range pr.Endpoints {
		add(s)
	}
	return out
}

// endpointIndex answers "does this prefix hold an accepted peer's
// endpoint" in one map lookup: it keeps, for each endpoint, the prefixes
// that contain it at the lengths the records use (a handful: every length
// would double the merge's time), pointing at the first endpoint there.
type endpointIndex struct {
	list []endpointRef
	at   map[netip.Prefix]int // index in list
	lens [2][]int             // lengths the records' allowed_ips use: IPv4, IPv6
}

func newEndpointIndex(records []Peer, peers int) endpointIndex {
	var seen [2][129]bool
	x := endpointIndex{at: make(map[netip.Prefix]int, peers), list: make([]endpointRef, 0, peers)}
	for _, pr := range records {
		for _, pfx := range pr.AllowedIPs {
			// A /0 is never looked up (check exempts a record's, which
			// is never routed): indexing it would add an entry per
			// endpoint for nothing.
			f, b := family(pfx.Addr()), pfx.Bits()
			if b > 0 && !seen[f][b] {
				seen[f][b] = true
				x.lens[f] = append(x.lens[f], b)
			}
		}
	}
	return x
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// endpointRef is one endpoint of a peer; where is the file position of a
// [[peer]], "" for a directory record.
type endpointRef struct {
	ap        netip.AddrPort
	id, where string
}

func (e endpointRef) String() string {
	s := fmt.Sprintf("endpoint %s of peer %q", e.ap, e.id)
	if e.where != "" {
		s += " (" + e.where + ")"
	}
	return s
}

func (x *endpointIndex) add(e endpointRef) {
	x.list = append(x.list, e)
	a := e.ap.Addr()
	for _, b := range x.lens[family(a)] {
		p := netip.PrefixFrom(a, b).Masked()
		if _, ok := x.at[p]; !ok {
			x.at[p] = len(x.list) - 1
		}
	}
}

// in finds an endpoint inside pfx, a prefix of one of the records.
func (x *endpointIndex) in(pfx netip.Prefix) (endpointRef, bool) {
	i, ok := x.at[pfx.Masked()]
	if !ok {
		return endpointRef{}, false
	}
	return x.list[i], true
}

// etcdAddrs is the IP addresses among d's etcd endpoints (host names are
// left out: they resolve only when dialled).
func etcdAddrs(d *Directory) []netip.Addr {
	if d == nil {
		return nil
	}
	var out []netip.Addr
	for _, s := range d.Endpoints {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		// A loopback etcd (a local proxy) is reached through the local
		// table, before any route of ours: no record can capture it.
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !a.Unmap().IsLoopback() {
			out = append(out, a.WithZone("").Unmap())
		}
	}
	return out
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

// containingAbove finds an added prefix of at least minBits bits equal to
// or wider than pfx.
func (s *prefixSet) containingAbove(pfx netip.Prefix, minBits int) (string, bool) {
	for b := pfx.Bits(); b >= minBits; b-- {
		if owner, ok := s.exact[netip.PrefixFrom(pfx.Addr(), b).Masked()]; ok {
			return owner, true
		}
	}
	return "", false
}

// overlapping finds an added prefix that contains pfx or lies inside it,
// a /0 included. A record gets no exemption for /0s that [[peer]] tables
// get among themselves (crossCheck): a narrower record prefix beside the
// file's /0 would take that part of the full tunnel's traffic, and a
// record's /0 beside narrower prefixes all that they leave, on the word of
// whoever can write to etcd.
func (s *prefixSet) overlapping(pfx netip.Prefix) (string, bool) {
	if owner, ok := s.containingAbove(pfx, 0); ok {
		return owner, true
	}
	owner, ok := s.ancestors[pfx]
	return owner, ok
}

// CheckEndpoint applies [[peer]]'s endpoint rules (host:port, IP literal or
// DNS name) to an endpoint from elsewhere.
func CheckEndpoint(s string) error { return checkEndpoint(s) }
