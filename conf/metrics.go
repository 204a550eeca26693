package conf

import (
	"net"
	"net/netip"
	"strconv"
)

// metricsKeys are the keys of [metrics].
var metricsKeys = []string{"listen"}

// Metrics is the [metrics] table: where Prometheus scrapes /metrics.
type Metrics struct {
	// Listen is host:port on loopback; "" (the default) serves no metrics.
	Listen string
}

// metrics validates [metrics]. The listener must be on loopback: /metrics has
// no authentication, and it shows peer IDs and traffic volumes. To scrape from
// another host, put an authenticating proxy on this one.
func (p *parser) metrics(t table, m *Metrics) {
	s, line, ok := p.str(t, "listen")
	if !ok {
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		p.addf(line, "listen %q is not host:port, e.g. \"127.0.0.1:9586\"", s)
		return
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		p.addf(line, "listen %q: port %q must be a number from 1 to 65535", s, port)
		return
	}
	if host != "localhost" {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.IsLoopback() || a.Zone() != "" {
			p.addf(line, "listen %q: metrics are served on loopback only (127.0.0.1, ::1 or localhost): they have no authentication and show peer IDs and traffic; put an authenticating proxy in front to scrape from elsewhere", s)
			return
		}
	}
	m.Listen = s
}
