package conf

import (
	"slices"
	"time"
)

// MinFailoverAfter keeps failover_after above a round trip plus the tick
// that checks it, so a busy link does not flap between gateways.
const MinFailoverAfter = time.Second

// endpoints reads a peer's endpoint: one "host:port" string, or a list of
// them (a gateway group, tried in order), and failover_after. Endpoint stays
// the first one, for the code that knows only one.
func (p *parser) endpoints(t table, pr *Peer) {
	line := p.keyLine(t, "endpoint")
	switch v := t.m["endpoint"].(type) {
	case nil:
	case string:
		if err := checkEndpoint(v); err != nil {
			p.addf(line, "endpoint %q of %s: %v", v, p.peerName(t, *pr), err)
		}
		pr.Endpoint, pr.Endpoints = v, []string{v}
	case []any:
		list, _, ok := p.strList(t, "endpoint", "198.18.1.1:51820")
		if !ok {
			break
		}
		if len(list) == 0 {
			p.addf(line, "endpoint of %s is an empty list; give at least one host:port or leave endpoint out", p.peerName(t, *pr))
			break
		}
		for _, s := range list {
			if err := checkEndpoint(s); err != nil {
				p.addf(line, "endpoint %q of %s: %v", s, p.peerName(t, *pr), err)
				continue
			}
			if contains(pr.Endpoints, s) {
				p.addf(line, "endpoint %q of %s is listed twice", s, p.peerName(t, *pr))
				continue
			}
			pr.Endpoints = append(pr.Endpoints, s)
		}
		if len(pr.Endpoints) > 0 {
			pr.Endpoint = pr.Endpoints[0]
		}
	default:
		p.addf(line, "endpoint must be a string such as \"198.18.1.1:51820\" or a list of them, not %s", typeName(v))
	}

	if d, line, ok := p.duration(t, "failover_after"); ok {
		switch {
		case d > 0 && d < MinFailoverAfter:
			p.addf(line, "failover_after %v of %s is below %v; a slow round trip would move the peer between gateways", d, p.peerName(t, *pr), MinFailoverAfter)
		case d > 0 && pr.PersistentKeepalive == 0:
			p.addf(line, "failover_after of %s needs persistent_keepalive: silence is only a sign of failure when keepalives are sent", p.peerName(t, *pr))
		case d > 0 && pr.PersistentKeepalive >= d:
			p.addf(line, "failover_after %v of %s must exceed persistent_keepalive %v, or an idle link would look dead", d, p.peerName(t, *pr), pr.PersistentKeepalive)
		}
		pr.FailoverAfter = d
	}
	if pr.FailoverAfter > 0 && len(pr.Endpoints) == 0 {
		p.addf(p.keyLine(t, "failover_after"), "failover_after of %s needs endpoint: a roaming peer has nowhere to fail over to", p.peerName(t, *pr))
	}
}

// groupLoops runs endpointLoop on every endpoint of a group after the
// first (the first is Endpoint, checked already).
func (p *parser) groupLoops(c *Config, idx *prefixIndex, i, line int) {
	if len(c.Peers[i].Endpoints) < 2 {
		return
	}
	for _, e := range c.Peers[i].Endpoints[1:] {
		tmp := *c
		tmp.Peers = slices.Clone(c.Peers)
		tmp.Peers[i].Endpoint = e
		p.endpointLoop(&tmp, idx, i, line) // same allowed_ips: the same index
	}
}
