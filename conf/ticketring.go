package conf

import (
	"os"
	"time"

	"stunnel/tickets"
)

// ticketRingKeys reads [tickets] ring, group_secret_file and rotator_ttl:
// the ticket-key ring held in etcd (docs/GATEWAY-GROUPS.md).
func (p *parser) ticketRingKeys(t table, tk *Tickets) {
	if s, line, ok := p.str(t, "ring"); ok {
		tk.RingLine = line
		switch s {
		case "etcd":
			tk.Ring = s
		case "local":
		default:
			p.addf(line, "ring must be \"etcd\" (the group's keys in the [directory]'s etcd) or \"local\" (key_file or in memory), not %q", s)
		}
		if tk.Ring == "etcd" && tk.KeyFile != "" {
			p.addf(line, "ring = \"etcd\" and key_file exclude each other: the keys are either in etcd or in the file; remove one")
		}
	}
	if name, line, ok := p.str(t, "group_secret_file"); ok {
		path := p.path(name)
		tk.GroupSecretFile = path
		if tk.Ring != "etcd" {
			p.addf(line, "group_secret_file is used only with ring = \"etcd\"; add that, or remove group_secret_file")
		}
		if fi, err := os.Stat(path); err != nil {
			p.addf(line, "group_secret_file: cannot stat %s: %v; make one with: stunnel tickets group-secret -o %s (and copy it to every gateway of the group)", path, unwrapPathError(err), path)
		} else if err := tickets.CheckGroupSecretFileMode(path, fi); err != nil {
			p.addf(line, "group_secret_file: %v", err)
		} else if g, err := tickets.ReadGroupSecretFile(path); err != nil {
			p.addf(line, "group_secret_file: %v", err)
		} else {
			g.Zero()
		}
	} else if tk.Ring == "etcd" {
		p.addf(tk.RingLine, "ring = \"etcd\" needs group_secret_file, the secret that seals the keys in etcd; make one with: stunnel tickets group-secret -o FILE")
	}
	if v, line, ok := p.duration(t, "rotator_ttl"); ok {
		if v < time.Second || v%time.Second != 0 {
			p.addf(line, "rotator_ttl must be whole seconds, at least \"1s\" (an etcd lease), e.g. \"5s\"")
		}
		if tk.Ring != "etcd" {
			p.addf(line, "rotator_ttl is used only with ring = \"etcd\"")
		}
		tk.RotatorTTL = v
	}
}

// ticketRingNeedsDirectory: the etcd ring reaches etcd through [directory].
func (p *parser) ticketRingNeedsDirectory(c *Config) {
	if c.Tickets.Ring == "etcd" && c.Directory == nil {
		p.addf(c.Tickets.RingLine, "ring = \"etcd\" needs a [directory] table: the ring lives under its prefix, in its etcd (etcd_endpoints, prefix, ca_file...)")
	}
}
