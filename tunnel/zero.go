package tunnel

// Secrets that must not outlive their use (issue 12, finding 6): a removed
// peer's PSK after a reload, and every key of the device after Close.
//
// Locking: Peer.presharedKey is set when the Peer is made and written once
// more, to zero it, by zeroSecrets under p.mu; every reader that may run
// concurrently with a reload (LookupPeer on a handshake worker, and
// sendInitiation) reads it under p.mu. (The field's comment lives in
// peer.go, which the session-core refactor owns.)

// zeroSecrets overwrites the peer's PSK, in the Peer and in its copy of the
// configuration. The peer must be stopped and its sessions cleared.
func (p *Peer) zeroSecrets() {
	p.mu.Lock()
	p.presharedKey.Zero()
	p.cfg.PresharedKey.Zero()
	p.mu.Unlock()
}

// zeroDeviceSecrets overwrites the device's copy of the static private key
// once nothing runs any more (Close).
func (d *Device) zeroDeviceSecrets() {
	d.hsConfig.PrivateKey.Zero()
}
