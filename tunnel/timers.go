package tunnel

import (
	"time"

	"stunnel/rekey"
)

// The peers' timers run from one goroutine that sleeps until the earliest
// deadline over all peers (schedule.go); latency-critical work (the first
// initiation) is started directly by the packet path through wantHandshake.

// tick runs the timers of every peer once at the current time: tests with
// a fake clock (Options.TickInterval < 0) call it, and a positive
// TickInterval adds it as a periodic walk to the schedule.
func (d *Device) tick() {
	now := d.now()
	if d.ticketRing != nil {
		_ = d.ticketRing.Rotate(now) // a key-file ring has nothing to generate; its outage is logged at issuance
	}
	for _, p := range d.peers.Load().list {
		p.act(p.sess.Due(now), now)
	}
}

// act carries out what the session core asked for.
func (p *Peer) act(act rekey.Action, now time.Time) {
	if act&rekey.ActZeroKeys != 0 {
		p.d.log.Debug("session keys zeroed after a long idle time", "peer", p.id)
	}
	if act&rekey.ActGiveUp != 0 {
		p.giveUp(now)
	}
	if act&rekey.ActSendInitiation != 0 {
		p.sendInitiation(now)
	}
	if act&rekey.ActSendKeepalive != 0 {
		p.sendKeepalive()
	}
	p.rearm()
}

// giveUp ends a handshake that got no answer (the session core has
// abandoned it and says why): queued packets are dropped and counted, the
// reason is logged, and a DNS endpoint is resolved again in case the peer
// moved.
func (p *Peer) giveUp(now time.Time) {
	p.mu.Lock()
	dropped := p.pending.Len()
	p.pending.Drain(func(pkt []byte) { p.d.pool.Put(bufferOf(pkt)) })
	configured := p.cfg.Endpoint
	p.mu.Unlock()
	p.resolveEndpoint(configured) // in case the peer moved
	p.drops.add(dropNoKey, uint64(dropped))
	p.d.log.Warn("giving up on handshake", "peer", p.id, "reason", p.sess.Status(now).Problem.String(), "dropped_packets", dropped)
}
