package tunnel

import (
	"errors"
	"fmt"
)

// ErrNoPeer is wrapped by the admin actions when no configured peer has the
// given ID.
var ErrNoPeer = errors.New("no such peer")

// peerByID finds a running peer for an admin action.
func (d *Device) peerByID(id string) (*Peer, error) {
	if d.isClosed() {
		return nil, fmt.Errorf("%s: tunnel is closed", d.name)
	}
	p := d.peers.Load().byID[id]
	if p == nil {
		return nil, fmt.Errorf("peer %q: %w in %s's configuration", id, ErrNoPeer, d.name)
	}
	return p, nil
}

// RekeyPeer starts a new handshake with the peer now, even if its keys are
// fresh: the timers only hold it back while one is already under way or
// until RekeyTimeout after the last initiation (the same rate limit every
// handshake obeys), so it is never a way to flood the peer. Traffic keeps
// flowing on the current keys until the new ones are in place.
func (d *Device) RekeyPeer(id string) error {
	p, err := d.peerByID(id)
	if err != nil {
		return err
	}
	if !p.enter() {
		return fmt.Errorf("peer %q is being removed", id)
	}
	defer p.leave()
	if p.currentEndpoint() == nil {
		return fmt.Errorf("peer %q has no endpoint yet (it has none configured and has not contacted us): nothing to rekey with", id)
	}
	p.wantHandshake()
	d.log.Info("rekey requested through the control socket", "peer", id)
	return nil
}

// DisconnectPeer drops the peer's sessions: every key is zeroed, its
// indices and queued packets are forgotten. The peer stays configured, so
// the next packet either way starts a new handshake.
func (d *Device) DisconnectPeer(id string) error {
	p, err := d.peerByID(id)
	if err != nil {
		return err
	}
	// Hold reloadMu so a reload cannot remove (stop and clear) the peer
	// at the same time.
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.isClosed() {
		return fmt.Errorf("%s: tunnel is closed", d.name)
	}
	if d.peers.Load().byID[id] != p {
		return fmt.Errorf("peer %q: %w in %s's configuration (removed by a reload)", id, ErrNoPeer, d.name)
	}
	p.clearSessions()
	d.log.Info("peer disconnected through the control socket: sessions dropped and zeroed", "peer", id)
	return nil
}
