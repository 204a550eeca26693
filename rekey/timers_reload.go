package rekey

import "time"

// SetPersistentKeepalive changes the NAT keepalive interval of running
// timers (a config reload), keeping all other timer state; 0 turns it off.
// The next keepalive is due one interval after now.
func (t *Timers) SetPersistentKeepalive(interval time.Duration, now time.Time) {
	if interval == t.p.PersistentKeepalive {
		return
	}
	t.p.PersistentKeepalive = interval
	t.persistent = time.Time{}
	if interval > 0 {
		t.persistent = now.Add(interval)
	}
}
