package tunnel

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"stunnel/rekey"
)

func newPeerTimers(policy rekey.Policy, persistentKeepalive time.Duration) *rekey.Timers {
	policy.PersistentKeepalive = persistentKeepalive
	return rekey.NewTimers(policy, rand.Float64)
}

// runTicker drives every peer's timers. One ticker for the interface instead
// of timers per peer: the handful of due checks per tick cost less than the
// wake-ups, and latency-critical work (the first initiation) is started
// directly by the packet path through wantHandshake.
func (d *Device) runTicker(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			d.tick()
		case <-d.closed:
			return
		}
	}
}

// tick runs the timers of every peer once at the current time.
func (d *Device) tick() {
	now := d.now()
	for _, p := range d.peers.Load().list {
		p.mu.Lock()
		act := p.timers.Due(now)
		p.mu.Unlock()
		p.act(act, now)
		d.indices.releaseKeypairs(p.keypairs.Expire(now))
	}
}

// act carries out what the timers asked for.
func (p *Peer) act(act rekey.Action, now time.Time) {
	if act&rekey.ActZeroKeys != 0 {
		p.d.indices.releaseKeypairs(p.keypairs.Clear())
		p.d.log.Debug("session keys zeroed after a long idle time", "peer", p.id)
	}
	if act&rekey.ActGiveUp != 0 {
		p.giveUp()
	}
	if act&rekey.ActSendInitiation != 0 {
		p.sendInitiation(now)
	}
	if act&rekey.ActSendKeepalive != 0 {
		p.sendKeepalive()
	}
}

// giveUp ends a handshake that got no answer: queued packets are dropped and
// counted, the reason is logged and shown, and a DNS endpoint is resolved
// again in case the peer moved.
func (p *Peer) giveUp() {
	p.mu.Lock()
	attempts := p.timers.Attempts()
	dropped := p.pending.Len()
	p.pending.Drain(func(pkt []byte) { p.d.pool.Put(bufferOf(pkt)) })
	p.abandonInitiationLocked()
	ep := p.cfg.Endpoint
	if cur := p.currentEndpoint(); cur != nil {
		ep = cur.DstToString()
	}
	noAnswer := fmt.Sprintf("handshake did not complete: no answer from %s after %d attempts", ep, attempts)
	if p.lastError == "" || strings.HasPrefix(p.lastError, "handshake did not complete") || strings.HasPrefix(p.lastError, "no answer") {
		p.lastError = noAnswer
	} else if !strings.Contains(p.lastError, "; gave up after") {
		// The peer did answer, with a refusal: that reason is the useful one.
		p.lastError += fmt.Sprintf("; gave up after %d attempts", attempts)
	}
	msg := p.lastError
	p.resolveEndpoint(p.cfg.Endpoint) // in case the peer moved
	p.mu.Unlock()
	p.drops.add(dropNoKey, uint64(dropped))
	p.d.log.Warn("giving up on handshake", "peer", p.id, "reason", msg, "dropped_packets", dropped)
}
