package session

import (
	"time"

	"stunnel/rekey"
)

// Handshaking reports whether we wait for a handshake to complete.
func (p *Peer) Handshaking() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.timers.Handshaking()
}

// Initiating reports whether an initiation of ours waits for its response.
func (p *Peer) Initiating() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.initiation != nil
}

// Status is a snapshot for show and metrics.
type Status struct {
	Handshakes         uint64
	HandshakesResumed  uint64    // of Handshakes, those that were resumptions
	LastHandshake      time.Time // zero: never
	Problem            Problem
	CookieReplies      uint64
	Current            *rekey.Keypair // nil: no usable key
	Ticket             *TicketStatus  // the ticket we hold for the peer, nil if none
	ResumptionsRefused map[string]uint64
	Restored           bool // the current session came back from a saved state
}

// Status returns the peer's state at now.
func (p *Peer) Status(now time.Time) Status {
	p.mu.Lock()
	s := Status{Handshakes: p.handshakes, HandshakesResumed: p.resumed, LastHandshake: p.lastHandshake, Problem: p.problem, Restored: p.restored}
	if p.held != nil {
		s.Ticket = &TicketStatus{Received: p.held.received, Expires: p.held.expires}
	}
	if len(p.refused) > 0 {
		s.ResumptionsRefused = make(map[string]uint64, len(p.refused))
		for k, v := range p.refused {
			s.ResumptionsRefused[k] = v
		}
	}
	p.mu.Unlock()
	s.CookieReplies = p.cookieReplies.Load()
	s.Current = p.keypairs.Current(now)
	return s
}
