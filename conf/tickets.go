package conf

import (
	"os"
	"time"

	"stunnel/tickets"
)

// Tickets is the [tickets] table: session resumption (docs/CONFIGURATION.md).
type Tickets struct {
	Enabled bool
	// KeyFile is the ticket-key file, absolute ("" = keys generated in memory).
	// It is re-read on SIGHUP; `stunnel tickets genkey|add` write it.
	KeyFile                string
	EncryptDecryptLifetime time.Duration // of generated keys
	DecryptLifetime        time.Duration // of generated keys
	ReauthAfter            time.Duration // a full handshake at least this often
	// Ring is "etcd" when the group's keys live in the [directory]'s etcd
	// (ticketring/, docs/GATEWAY-GROUPS.md), "" otherwise (key_file or
	// keys made in memory).
	Ring string
	// GroupSecretFile seals the keys in etcd (absolute; ring = "etcd" only).
	GroupSecretFile string
	// RotatorTTL is the election lease of the etcd ring's rotator: a dead
	// rotator is replaced after at most this long (0: the default, 5 s).
	RotatorTTL time.Duration
	RingLine   int // line of `ring`, for the checks across tables
}

var ticketsKeys = []string{"enabled", "key_file", "encrypt_decrypt_lifetime", "decrypt_lifetime", "reauth_after",
	"ring", "group_secret_file", "rotator_ttl"}

// DefaultRotatorTTL is rotator_ttl's default.
const DefaultRotatorTTL = 5 * time.Second

func (p *parser) tickets(t table, tk *Tickets) {
	*tk = Tickets{
		Enabled:                true,
		EncryptDecryptLifetime: tickets.DefaultEncryptDecryptLifetime,
		DecryptLifetime:        tickets.DefaultDecryptLifetime,
		ReauthAfter:            tickets.DefaultReauthAfter,
	}
	if v, present := t.m["enabled"]; present {
		b, ok := v.(bool)
		if !ok {
			p.addf(p.keyLine(t, "enabled"), "enabled must be true or false, not %s", typeName(v))
		}
		tk.Enabled = b
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"encrypt_decrypt_lifetime", &tk.EncryptDecryptLifetime}, {"decrypt_lifetime", &tk.DecryptLifetime}, {"reauth_after", &tk.ReauthAfter}} {
		if v, line, ok := p.duration(t, d.key); ok {
			if v == 0 {
				p.addf(line, "%s must be greater than zero", d.key)
			}
			*d.dst = v
		}
	}
	if name, line, ok := p.str(t, "key_file"); ok {
		path := p.path(name)
		tk.KeyFile = path
		if fi, err := os.Stat(path); err != nil {
			p.addf(line, "key_file: cannot stat %s: %v; make one with: stunnel tickets genkey -o %s", path, unwrapPathError(err), path)
		} else if err := tickets.CheckKeyFileMode(path, fi); err != nil {
			p.addf(line, "key_file: %v", err)
		} else if keys, err := tickets.ReadRingKeyFile(path); err != nil {
			p.addf(line, "key_file: %v", err)
		} else {
			for i := range keys {
				keys[i].Erase()
			}
		}
	}
	p.ticketRingKeys(t, tk)
}
