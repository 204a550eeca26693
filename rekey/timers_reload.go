package rekey

import "time"

// SetPolicy gives running timers a new policy (a config reload), keeping
// their state: deadlines already armed stay as they are, the next ones use
// the new durations. The persistent keepalive restarts from now when its
// interval changed; 0 turns it off.
func (t *Timers) SetPolicy(p Policy, now time.Time) {
	keepaliveChanged := p.PersistentKeepalive != t.p.PersistentKeepalive
	t.p = p
	if keepaliveChanged {
		t.persistent = time.Time{}
		if p.PersistentKeepalive > 0 {
			t.persistent = now.Add(p.PersistentKeepalive)
		}
	}
}

// SetPersistentKeepalive changes only the NAT keepalive interval (see
// SetPolicy).
func (t *Timers) SetPersistentKeepalive(interval time.Duration, now time.Time) {
	p := t.p
	p.PersistentKeepalive = interval
	t.SetPolicy(p, now)
}
