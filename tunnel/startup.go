package tunnel

import (
	"errors"
	"fmt"
	"syscall"
)

// startPeers does what a peer needs once it runs (at New, and for peers a
// reload added), beyond its goroutines:
//
//   - A peer with an endpoint and no session (none restored from a saved
//     state) handshakes at once (resuming when we hold its ticket). For a
//     site behind NAT with persistent_keepalive, until it sends something
//     the other side has no path to it; and after a crash, the peer may
//     still be sending under a session we lost, which it would only notice
//     after ~15 s of silence. The persistent keepalive then keeps the NAT
//     mapping open (keepPathOpen). A peer whose session was restored sends
//     a keepalive under it instead.
//   - A peer with no endpoint is logged once: it can only be reached after it
//     has contacted us, which is otherwise visible only in `stunnel show`.
func (d *Device) startPeers(peers []*Peer) {
	for _, p := range peers {
		p.mu.Lock()
		endpoint := p.cfg.Endpoint
		p.mu.Unlock()
		switch {
		case endpoint == "" && p.currentEndpoint() == nil:
			d.log.Info("peer has no endpoint: it is reached only after it contacts us", "peer", p.id)
		case p.sess.Current(d.now()) == nil:
			p.wantHandshake()
		default:
			// A session restored from the state file: tell the peer we are
			// back at once, before its "data sent, nothing received" timer
			// (keepalive + rekey timeout) gives up on the session we kept.
			p.sendKeepalive()
		}
	}
}

// keepPathOpen is the persistent keepalive's answer when no session key is
// left (the last one expired after a quiet spell): a handshake, which
// itself keeps the NAT mapping open and gives the next keepalives a key.
// Without it a NAT'd site that sent nothing for reject_after would become
// unreachable from the other side. Only for a peer with persistent_keepalive
// and an endpoint (configured, or learned from the peer); the passive
// keepalive has nothing to say without a key.
func (p *Peer) keepPathOpen() {
	p.mu.Lock()
	want := p.cfg.PersistentKeepalive > 0 && (p.cfg.Endpoint != "" || p.currentEndpoint() != nil)
	p.mu.Unlock()
	if want {
		p.wantHandshake()
	}
}

// listenError explains why the UDP port could not be opened. When the port
// is taken, the holder may be an IPv6 socket even though the error names our
// IPv4 one (a dual-stack [::] socket holds the IPv4 port too), so it names
// both families and how to find the holder. A port below 1024 refused
// names the capability it needs.
func listenError(port int, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("UDP port %d is already in use (by an IPv4 or a dual-stack IPv6 socket; `ss -uapn 'sport = :%d'` shows which program): stop it or choose another listen_port: %w", port, port, err)
	}
	if errors.Is(err, syscall.EACCES) && port < 1024 {
		return fmt.Errorf("UDP port %d is below 1024, which needs CAP_NET_BIND_SERVICE: run as root or under the shipped unit (its CapabilityBoundingSet= has it), or choose a listen_port of 1024 or more: %w", port, err)
	}
	return fmt.Errorf("listening on UDP port %d: %w", port, err)
}
