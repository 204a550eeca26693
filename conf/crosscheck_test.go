package conf

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"stunnel/handshake"
)

// crossCheckPairwise is the pair-by-pair check the prefix index replaced
// (issue 21), kept as the reference: the index must report exactly the same
// problems, in the same order, on any config.
func crossCheckPairwise(p *parser, c *Config) {
	in := &c.Interface
	for i, pr := range c.Peers {
		if pr.PublicKey.IsZero() {
			continue
		}
		for j := range i {
			if c.Peers[j].PublicKey.Equal(pr.PublicKey) {
				p.addf(pr.Line, "public_key of peer %q is also the key of peer %q (line %d)", pr.ID, c.Peers[j].ID, c.Peers[j].Line)
				break
			}
		}
	}
	for i, pr := range c.Peers {
		for _, a := range pr.AllowedIPs {
			for j := range i {
				for _, b := range c.Peers[j].AllowedIPs {
					if a.Overlaps(b) && (a.Bits() == 0) == (b.Bits() == 0) {
						p.addf(pr.Line, "allowed_ips %s of peer %q overlaps %s of peer %q (line %d); each address must belong to one peer", a, pr.ID, b, c.Peers[j].ID, c.Peers[j].Line)
					}
				}
			}
			for _, own := range in.Addresses {
				if a.Bits() > 0 && a.Contains(own.Addr()) {
					p.addf(pr.Line, "allowed_ips %s of peer %q contains this host's own address %s; use the peer's address or subnets instead", a, pr.ID, own.Addr())
				}
			}
		}
		ap, err := netip.ParseAddrPort(pr.Endpoint)
		if err != nil {
			continue
		}
		a := ap.Addr().WithZone("")
		for _, own := range in.Addresses {
			if own.Addr() == a {
				p.addf(pr.Line, "endpoint %s of peer %q is this host's own overlay address; use the peer's underlay address", pr.Endpoint, pr.ID)
			}
		}
		for j, o := range c.Peers {
			for _, pfx := range o.AllowedIPs {
				if pfx.Bits() > 0 && pfx.Contains(a) {
					p.addf(pr.Line, "endpoint %s of peer %q lies inside allowed_ips %s of peer %q; its encrypted packets would be routed into the tunnel itself", pr.Endpoint, pr.ID, pfx, c.Peers[j].ID)
				}
			}
		}
	}
}

// randomConfig draws peers from a small address space so that duplicates,
// nesting, /0s, mapped IPv4-in-IPv6 endpoints and shared keys are common.
func randomConfig(r *rand.Rand) *Config {
	c := &Config{}
	c.Interface.Addresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("fd00::1/64")}
	pfx := func() netip.Prefix {
		if r.IntN(3) == 0 {
			a := netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(r.IntN(4))})
			return netip.PrefixFrom(a, []int{0, 8, 64, 126, 128}[r.IntN(5)]).Masked()
		}
		a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(3)), byte(r.IntN(8))})
		return netip.PrefixFrom(a, []int{0, 8, 16, 23, 24, 30, 31, 32}[r.IntN(8)]).Masked()
	}
	for i := range 1 + r.IntN(12) {
		pr := Peer{ID: fmt.Sprint("p", i), Line: 10 * (i + 1)}
		pr.PublicKey = handshake.PublicKey{0: byte(1 + r.IntN(6))}
		if r.IntN(8) == 0 {
			pr.PublicKey = handshake.PublicKey{}
		}
		for range r.IntN(4) {
			if q := pfx(); !slices.Contains(pr.AllowedIPs, q) {
				pr.AllowedIPs = append(pr.AllowedIPs, q)
			}
		}
		switch r.IntN(4) {
		case 0:
			pr.Endpoint = fmt.Sprintf("10.0.%d.%d:51820", r.IntN(3), r.IntN(8))
		case 1:
			pr.Endpoint = fmt.Sprintf("[fd00::%d]:51820", r.IntN(4))
		case 2:
			pr.Endpoint = fmt.Sprintf("[::ffff:10.0.0.%d]:51820", r.IntN(4))
		}
		c.Peers = append(c.Peers, pr)
	}
	return c
}

func TestCrossCheckMatchesPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	found := 0
	for n := range 3000 {
		c := randomConfig(r)
		got, want := &parser{file: "x.toml"}, &parser{file: "x.toml"}
		got.crossCheck(c)
		crossCheckPairwise(want, c)
		// crossCheck also checks ids and the MTU; compare only the problems
		// the index replaced (the reference reports nothing else).
		var g Errors
		for _, pr := range got.probs {
			if strings.HasPrefix(pr.Msg, "public_key of") || strings.HasPrefix(pr.Msg, "allowed_ips") || strings.HasPrefix(pr.Msg, "endpoint ") {
				g = append(g, pr)
			}
		}
		if !slices.Equal(g, want.probs) {
			t.Fatalf("config %d: index found\n%v\npair by pair\n%v", n, g, want.probs)
		}
		found += len(g)
	}
	if found < 1000 {
		t.Fatalf("only %d problems in 3000 random configs: the generator does not exercise the checks", found)
	}
	t.Logf("%d problems compared", found)
}
