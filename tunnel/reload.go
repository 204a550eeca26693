package tunnel

import (
	"fmt"
	"slices"
	"strings"

	"stunnel/conf"
)

// Reload applies a new, already validated configuration without touching
// the sessions of peers whose identity is unchanged: peers added start,
// peers removed stop and their keys are zeroed, the routing table is swapped
// atomically (the packet path never sees half of it).
//
// What cannot change on a running device is refused with an error and the
// running configuration is kept whole: the interface name, peer ID, private
// key (and a token key's PIN file), listen port and cipher preference are
// fixed for the device's life (restart to change them). Addresses and MTU are the daemon's business
// (netcfg), not the data plane's. [session] durations reach the running
// timers at once; a key's own lifetime is fixed when its session is made.
// [tickets] reauth_after reaches this side's resumption check at once (the
// ring's own keys and lifetimes are the daemon's to reconfigure).
func (d *Device) Reload(cfg *conf.Config) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.isClosed() {
		return fmt.Errorf("%s: tunnel is closed", d.name)
	}
	if err := d.fixedSettingsChanged(cfg); err != nil {
		return err
	}
	if err := peerWithOwnKey(cfg, d.host.PublicKey()); err != nil {
		return err
	}
	policy := policyFrom(cfg)
	if err := policy.Validate(); err != nil {
		return fmt.Errorf("[session]: %w", err)
	}
	d.host.SetPolicy(policy)
	d.reloadReauthAfter(cfg)

	old := d.peers.Load()
	set := d.buildPeerSet(cfg, old)
	d.pool.SetLimit(bufferLimit(d.batch, max(len(set.list), len(old.list))))
	d.peers.Store(set)
	var added, removed []string
	var addedPeers []*Peer
	for _, p := range set.list {
		if old.byID[p.id] != p {
			p.start()
			added = append(added, p.id)
			addedPeers = append(addedPeers, p)
		}
	}
	for _, p := range old.list {
		if set.byID[p.id] != p {
			p.stop()
			d.endpoints.remove(p) // stopped first: nothing lists it again
			p.clearSessions()
			p.zeroSecrets()
			d.host.Forget(p.id)
			removed = append(removed, p.id)
		}
	}
	d.pool.SetLimit(bufferLimit(d.batch, len(set.list)))
	d.log.Info("configuration reloaded", "interface", d.name, "peers", len(set.list),
		"added", added, "removed", removed)
	d.startPeers(addedPeers)
	select {
	case d.failoverKick <- struct{}{}:
	default:
	}
	return nil
}

func (d *Device) fixedSettingsChanged(cfg *conf.Config) error {
	var changed []string
	i := cfg.Interface
	if i.Name != d.name {
		changed = append(changed, "name")
	}
	if i.PeerID != d.peerID {
		changed = append(changed, "peer_id")
	}
	if d.staticKeyChanged(i) {
		changed = append(changed, "private key")
	} else if d.pinFileChanged(i) {
		changed = append(changed, "pkcs11_pin_file")
	}
	if i.ListenPort != 0 && i.ListenPort != int(d.port) {
		changed = append(changed, "listen_port")
	}
	if cfg.Session.Cipher != d.host.Config().Cipher {
		changed = append(changed, "cipher")
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		return fmt.Errorf("%s: reload cannot change %s on a running tunnel; restart it (kept the running configuration)", cfg.Path, strings.Join(changed, ", "))
	}
	return nil
}

// reloadReauthAfter gives the session core the reloaded [tickets]
// reauth_after: whether this side offers a ticket it holds is decided there
// (session.Peer's last full handshake against it), and New set it once from
// the ring. Read from cfg, not the ring: the daemon reconfigures the ring
// after Reload returns. Zero keeps the running value (as
// tickets.Ring.Reconfigure does). Without a ring at start nothing changes:
// resumption is not switched on by a reload. enabled = false switches it
// off at once, both ways (no ticket issued or accepted, none offered), as
// at a start with it; true again switches the start's ring back on.
//
// Concurrency: the caller holds d.reloadMu, so reloads (and New, done
// before any) never interleave their SetTickets; the Host replaces its
// ticket policy whole through an atomic pointer, so a handshake reads the
// old policy or the new one, never a mix. d.ticketRing is immutable after
// New.
func (d *Device) reloadReauthAfter(cfg *conf.Config) {
	if d.ticketRing == nil {
		return
	}
	if !cfg.Tickets.Enabled {
		d.host.SetTickets(nil, false, 0)
		return
	}
	reauth := cfg.Tickets.ReauthAfter
	if reauth <= 0 {
		reauth = d.ticketRing.ReauthAfter()
	}
	d.host.SetTickets(d.ticketRing, true, reauth)
}
