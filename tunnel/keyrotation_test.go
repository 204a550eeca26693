package tunnel

import (
	"slices"
	"sync"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
)

// reloadDuringLookup answers the responder's lookup with the running
// configuration, then runs reload before the handshake goes on: the race
// of a reload with a handshake worker, made certain.
type reloadDuringLookup struct {
	handshake.PeerLookup
	once   sync.Once
	reload func()
}

func (r *reloadDuringLookup) LookupPeer(id []byte) (handshake.PeerInfo, error) {
	info, err := r.PeerLookup.LookupPeer(id)
	r.once.Do(r.reload)
	return info, err
}

// replaceAlphaDuringLookup makes b's next peer lookup reload b with a
// config that gives alpha a fresh public key (the old one leaked). It
// returns that key, and a channel closed once the reload has returned: the
// old alpha is stopped by then (Reload waits for every batch it admitted to
// be delivered or released, and frees its indices), so from then on nothing
// sent under the old session can reach b's TUN.
func replaceAlphaDuringLookup(t *testing.T, p *pair) (handshake.PublicKey, <-chan struct{}) {
	t.Helper()
	newKey := mustKey(t).PublicKey()
	return newKey, changeAlphaDuringLookup(t, p, func(alpha *conf.Peer) { alpha.PublicKey = newKey })
}

// changeAlphaDuringLookup makes b's next peer lookup reload b with a config
// in which change edited alpha; the channel is closed once the reload has
// returned.
func changeAlphaDuringLookup(t *testing.T, p *pair, change func(alpha *conf.Peer)) <-chan struct{} {
	t.Helper()
	changed := *p.b.cfg
	changed.Peers = slices.Clone(p.b.cfg.Peers)
	change(&changed.Peers[0])
	reloaded := make(chan struct{})
	cfg := p.b.dev.host.Config()
	cfg.Peers = &reloadDuringLookup{PeerLookup: cfg.Peers, reload: func() {
		defer close(reloaded)
		if err := p.b.dev.Reload(&changed); err != nil {
			t.Error(err)
		}
	}}
	return reloaded
}

// waitReloaded waits for replaceAlphaDuringLookup's reload to return.
func waitReloaded(t *testing.T, reloaded <-chan struct{}) {
	t.Helper()
	select {
	case <-reloaded:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out after 5s waiting for b's reload to return")
	}
}

// An operator replaces a peer's public key (the old one leaked) by a
// reload while a handshake of the old key's holder is being worked on: the
// session that key proved must not be handed to the peer that now carries
// the new key, or the old key's holder is let in as that peer.
func TestInitiationFromReplacedKeyDuringReload(t *testing.T) {
	p := newPair(t, nil)
	newKey, reloaded := replaceAlphaDuringLookup(t, p)
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("from the old key"))
	waitAnswered(t, p, reloaded)
	if got := p.b.dev.peers.Load().byID["alpha"].sess.PublicKey(); got != newKey {
		t.Fatal("b's alpha does not carry the new key after the reload")
	}
	// With the handshake refused, nothing can have reached b's TUN: a had
	// no session before it.
	select {
	case got := <-p.b.tun.fromTunnel:
		t.Fatalf("b took %q from the replaced key as alpha", got)
	default:
	}
	if prev, cur, next := p.b.dev.peers.Load().byID["alpha"].sess.Slots(); prev != nil || cur != nil || next != nil {
		t.Fatal("the new alpha holds a session the old key made")
	}
}

// The same race for a resumption: the ticket names the key it was issued
// to, and that key was just replaced.
func TestResumptionFromReplacedKeyDuringReload(t *testing.T) {
	var p *pair
	p = newPairOpts(t, nil, 0, nil, withTickets(&p))
	p.exchange(t, 1)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })
	newKey, reloaded := replaceAlphaDuringLookup(t, p)
	p.clock.Advance(121 * time.Second) // a rekeys, by resumption
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("from the old key"))
	// What a sent under its old session before the reload may have
	// arrived; once the reload has returned, nothing more of it can, and
	// once the resumption is answered, a session it made would show below.
	waitReloaded(t, reloaded)
	for len(p.b.tun.fromTunnel) > 0 {
		<-p.b.tun.fromTunnel
	}
	waitAnswered(t, p, reloaded)
	if got := p.b.dev.peers.Load().byID["alpha"].sess.PublicKey(); got != newKey {
		t.Fatal("b's alpha does not carry the new key after the reload")
	}
	select {
	case got := <-p.b.tun.fromTunnel:
		t.Fatalf("b took %q from the replaced key as alpha", got)
	default:
	}
	if prev, cur, next := p.b.dev.peers.Load().byID["alpha"].sess.Slots(); prev != nil || cur != nil || next != nil {
		t.Fatal("the new alpha holds a session the old key resumed")
	}
}

// responderReservations counts the indices d reserved for handshakes it is
// answering and has neither installed nor released yet.
func responderReservations(d *Device) int {
	d.indices.mu.RLock()
	defer d.indices.mu.RUnlock()
	n := 0
	for _, e := range d.indices.m {
		if e.peer == nil && e.keypair == nil {
			n++
		}
	}
	return n
}

// waitAnswered waits, once the reload inside b's lookup has returned, for
// b to be done with the handshake whose lookup ran it: the index reserved
// for it is then installed or released. A refusal is silent, so this is
// what tells the test that the refusal (or, without it, the install)
// happened.
func waitAnswered(t *testing.T, p *pair, reloaded <-chan struct{}) {
	t.Helper()
	waitReloaded(t, reloaded)
	waitFor(t, 5*time.Second, "b to install or release the handshake of the reload's lookup", func() bool {
		return responderReservations(p.b.dev) == 0
	})
}

// An operator changes a peer's pre-shared key (revokes the old one) by a
// reload while a handshake under the old one is being worked on: b's
// lookup answered with the old PSK, the reload restarted alpha with the new
// one, and the session made under the old one must not be installed on it.
// It used to be (Accept compared only the public key), and lasted up to
// reject_after.
func TestInitiationUnderOldPSKDuringReload(t *testing.T) {
	p := newPair(t, withPSK(testPSK(t)))
	newPSK := testPSK(t)
	reloaded := changeAlphaDuringLookup(t, p, func(alpha *conf.Peer) { alpha.PresharedKey = newPSK })
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("under the old PSK"))
	waitAnswered(t, p, reloaded)
	alpha := p.b.dev.peers.Load().byID["alpha"]
	if alpha.sess.PresharedKey() != newPSK {
		t.Fatal("b's alpha does not carry the new PSK after the reload")
	}
	if prev, cur, next := alpha.sess.Slots(); prev != nil || cur != nil || next != nil {
		t.Fatal("the new alpha holds a session made under the old PSK")
	}
}

// The same race for a resumption: the ticket was issued under the old PSK
// and the lookup gave the old PSK, which the reload then replaced.
func TestResumptionUnderOldPSKDuringReload(t *testing.T) {
	var p *pair
	psk := testPSK(t)
	p = newPairOpts(t, withPSK(psk), 0, nil, withTickets(&p))
	p.exchange(t, 1)
	waitFor(t, 5*time.Second, "a to hold b's ticket", func() bool { return p.a.peerStatus(t).Ticket != nil })
	newPSK := testPSK(t)
	reloaded := changeAlphaDuringLookup(t, p, func(alpha *conf.Peer) { alpha.PresharedKey = newPSK })
	p.clock.Advance(121 * time.Second) // a rekeys, by resumption
	p.a.tun.toTunnel <- ipv4UDP("198.19.0.1", "198.19.0.2", []byte("under the old PSK"))
	waitAnswered(t, p, reloaded)
	if p.a.peerStatus(t).Ticket != nil {
		t.Fatal("a made a full handshake, not a resumption")
	}
	alpha := p.b.dev.peers.Load().byID["alpha"]
	if alpha.sess.PresharedKey() != newPSK {
		t.Fatal("b's alpha does not carry the new PSK after the reload")
	}
	if prev, cur, next := alpha.sess.Slots(); prev != nil || cur != nil || next != nil {
		t.Fatal("the new alpha holds a session resumed under the old PSK")
	}
}
