package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"stunnel/internal/secretbuf"
	"stunnel/session"
)

// Sessions across a restart: the device's part is to retire every peer's
// sessions once nothing seals any more (CloseAndSave) and to restore them
// before anything is sent (Options.RestoreState). The format of one peer's
// state and the invariants are package session's; this file frames them:
//
//	count(4, LE), then per peer: length(4, LE) | session.Peer snapshot

// maxSavedPeer bounds one peer's saved state when reading (three keypairs
// with the largest replay windows fit).
const maxSavedPeer = 4 << 20

// RestoreSummary is what Options.RestoreState brought back, for the log line
// at start.
type RestoreSummary struct {
	Peers    int            // peers with at least one session back
	Sessions int            // keypairs restored
	Tickets  int            // tickets held again
	Dropped  map[string]int // keypairs or peers not restored, by reason
}

// String is the one log line at start.
func (s RestoreSummary) String() string {
	var why []string
	for r, n := range s.Dropped {
		why = append(why, fmt.Sprintf("%d %s", n, r))
	}
	if len(why) == 0 {
		why = []string{"none"}
	}
	return fmt.Sprintf("restored %d sessions of %d peers and %d tickets; dropped: %s",
		s.Sessions, s.Peers, s.Tickets, strings.Join(why, ", "))
}

// saveState snapshots every peer: with sessions only after the data plane
// stopped (Close's order), else tickets only. After the first peer the
// buffer holds secrets, so it grows through secretbuf.Grow (as Snapshot
// does), never by append alone: no array it leaves keeps a key.
func (d *Device) saveState(sessions bool) []byte {
	set := d.peers.Load()
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(set.list)))
	for _, p := range set.list {
		at := len(b)
		b = secretbuf.Grow(b, 4)
		b = binary.LittleEndian.AppendUint32(b, 0)
		ep := ""
		if cur := p.currentEndpoint(); cur != nil {
			ep = cur.DstToString()
		}
		b = p.sess.Snapshot(b, ep, sessions)
		binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	}
	return b
}

// SaveTickets returns the tickets the peers gave us, for a state file
// written while running: its sessions' counters are still in use, so it
// must never carry them.
func (d *Device) SaveTickets() []byte { return d.saveState(false) }

// CloseAndSave closes the device like Close and returns the state of every
// session, retired after the last packet was sealed: counters and replay
// windows are exact. The caller seals it (statefile) and clears it.
func (d *Device) CloseAndSave() ([]byte, error) {
	var state []byte
	err := d.close(func() { state = d.saveState(true) })
	return state, err
}

// restoreState brings saved sessions back into the new peer set, before the
// device sends anything; without sessions (a state saved while running)
// only the tickets. Unknown peers and damaged entries are skipped and
// counted: a bad state never stops the tunnel.
func (d *Device) restoreState(b []byte, sessions bool) RestoreSummary {
	sum := RestoreSummary{Dropped: map[string]int{}}
	set := d.peers.Load()
	now := d.now()
	if len(b) < 4 {
		sum.Dropped["unreadable state"]++
		return sum
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	for range n {
		if len(b) < 4 || int(binary.LittleEndian.Uint32(b)) > len(b)-4 || binary.LittleEndian.Uint32(b) > maxSavedPeer {
			sum.Dropped["unreadable state"]++
			break
		}
		size := binary.LittleEndian.Uint32(b)
		entry := b[4 : 4+size]
		b = b[4+size:]
		p := d.peerForState(set, entry)
		if p == nil {
			sum.Dropped["peer no longer configured"]++
			continue
		}
		restore := p.sess.Restore
		if !sessions {
			restore = p.sess.RestoreTickets
		}
		ep, r, err := restore(entry, now)
		if err != nil {
			reason := "unreadable state"
			switch {
			case errors.Is(err, session.ErrOtherPSK):
				reason = "peer preshared key changed"
			case errors.Is(err, session.ErrOtherIdentity):
				reason = "peer key changed"
			}
			sum.Dropped[reason]++
			continue
		}
		for _, why := range r.Dropped {
			sum.Dropped[why]++
		}
		if r.Sessions > 0 {
			sum.Peers++
			sum.Sessions += r.Sessions
			// The group member first, whether or not the peer has an
			// endpoint yet: a name listed before it may still be being
			// looked up, and only the member index keeps that lookup's
			// answer from pointing the peer back at the first gateway.
			if ep != "" && !p.restoreGroupMember(ep) && p.currentEndpoint() == nil {
				p.restoreEndpoint(ep)
			}
		}
		if r.Ticket {
			sum.Tickets++
		}
	}
	return sum
}

// peerForState finds the configured peer a saved entry belongs to.
func (d *Device) peerForState(set *peerSet, entry []byte) *Peer {
	id, ok := session.SnapshotPeerID(entry)
	if !ok {
		return nil
	}
	return set.byID[id]
}

// restoreGroupMember points a restored peer of an endpoint group at the
// gateway of its list its session was with when the state was saved (it had
// failed over there), not at the first one, where New put it: that gateway
// does not know the session (or is still down), so the restored session
// would be lost and traffic would stop until failover_after moved the peer
// on and a new handshake replaced it. Only a member written as an address
// is found; an address the group does not list (a gateway that roamed, a
// name's) leaves the peer where New put it, as for a single configured
// endpoint: the configuration wins. It reports whether ep was a member.
//
// Setting the index is what holds the peer there: a lookup of an earlier
// member's name still running from New finds, when it ends, that the group
// moved on (resolved), and leaves the endpoint alone.
func (p *Peer) restoreGroupMember(ep string) bool {
	ap, err := netip.ParseAddrPort(ep)
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	p.mu.Lock()
	member := ""
	for i, e := range p.cfg.Endpoints {
		m, err := netip.ParseAddrPort(e)
		if err == nil && len(p.cfg.Endpoints) > 1 && netip.AddrPortFrom(m.Addr().Unmap(), m.Port()) == ap {
			p.fo.index.Store(int32(i))
			member = e
			break
		}
	}
	p.mu.Unlock()
	if member == "" {
		return false
	}
	p.resolveNamed(member, false, false) // an address: set at once, as a failover sets it
	return true
}

// restoreEndpoint points a restored peer where its session last was.
func (p *Peer) restoreEndpoint(ep string) {
	if ap, err := netip.ParseAddrPort(ep); err == nil {
		p.setEndpoint(ap)
	}
}
