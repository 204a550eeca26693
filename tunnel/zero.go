package tunnel

import "fmt"

// Secrets that must not outlive their use (issue 12, finding 6): a removed
// peer's PSK after a reload, and every key of the device after Close.
//
// The session core keeps the PSK (session.Peer.ZeroSecrets) and the
// static key (session.Host.ZeroPrivateKey) under its own locks; the data
// plane's copy of the peer's configuration is ours, under p.mu.

// Format prints the peer's ID, never its keys: fmt would print the
// unexported configuration's pre-shared key byte by byte.
func (p *Peer) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "(peer %q)", p.id) }

// zeroSecrets overwrites the peer's PSK, in the session core and in our copy
// of the configuration. The peer must be stopped and its sessions cleared.
func (p *Peer) zeroSecrets() {
	p.sess.ZeroSecrets()
	p.mu.Lock()
	p.cfg.PresharedKey.Zero()
	p.mu.Unlock()
}

// zeroDeviceSecrets overwrites the device's copy of the static private key
// once nothing runs any more (Close).
func (d *Device) zeroDeviceSecrets() {
	d.host.ZeroPrivateKey()
}

// zeroFailedStart overwrites what New took in before it failed: the
// sessions and tickets restored from a saved state, the peers' PSKs and the
// static private key. Nothing has started yet (no peer, worker or reader
// goroutine) or still runs (the caller waited for the DNS lookups), so
// nothing else holds or uses them.
func (d *Device) zeroFailedStart(peers []*Peer) {
	for _, p := range peers {
		p.clearSessions()
		p.zeroSecrets()
	}
	d.zeroDeviceSecrets()
}
