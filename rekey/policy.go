// Package rekey holds the session-key policy of one peer, apart from sockets:
// when to start a new handshake, when a key may no longer seal or open, which
// of the previous, current and next keypairs sends, the per-peer timers as a
// pure state machine, and the bounded queue of packets waiting for a key.
//
// Nothing here reads a clock or sleeps: every call takes now, so the whole
// policy is tested with plain time.Time values advanced by hand.
package rekey

import (
	"fmt"
	"time"

	"stunnel/replay"
)

// Defaults, as in WireGuard (whitepaper section 6.1).
const (
	DefaultRekeyAfterTime      = 120 * time.Second
	DefaultRejectAfterTime     = 180 * time.Second
	DefaultRekeyAfterMessages  = uint64(1) << 60
	DefaultRejectAfterMessages = ^uint64(0) - (1 << 13) // 2^64 - 2^13 - 1
	DefaultKeepaliveTimeout    = 10 * time.Second
	DefaultRekeyTimeout        = 5 * time.Second
	DefaultRekeyJitter         = 333 * time.Millisecond
	DefaultRekeyAttemptTime    = 90 * time.Second
)

// MaxDuration bounds every duration of a policy (about 73 years): the
// timers add and multiply them (3*RejectAfterTime, KeepaliveTimeout +
// RekeyTimeout), and a sum past time.Duration's range wraps into the past,
// which makes a timer fire at once: keys zeroed right after each handshake.
const MaxDuration = 640000 * time.Hour

// Policy is the session-key policy of one tunnel. Validate it once (at config
// load) before handing it to NewKeypair or NewTimers.
type Policy struct {
	RekeyAfterTime      time.Duration // initiator starts a new handshake when its key is this old
	RejectAfterTime     time.Duration // a key never seals or opens when this old
	RekeyAfterMessages  uint64        // either side starts a new handshake after sending this many
	RejectAfterMessages uint64        // a key never seals this counter or above; the replay filter's limit
	KeepaliveTimeout    time.Duration // passive keepalive: data received, nothing sent for this long
	PersistentKeepalive time.Duration // keepalive after this long without sending (NAT); 0 = off
	RekeyTimeout        time.Duration // between handshake attempts
	RekeyJitter         time.Duration // up to this much extra per attempt, so peers do not synchronise
	RekeyAttemptTime    time.Duration // give up handshaking after this long
	ReplayWindow        uint64        // replay window in packets; power of two
}

// DefaultPolicy returns the documented defaults (docs/CONFIGURATION.md,
// [session]), which are WireGuard's.
func DefaultPolicy() Policy {
	return Policy{
		RekeyAfterTime:      DefaultRekeyAfterTime,
		RejectAfterTime:     DefaultRejectAfterTime,
		RekeyAfterMessages:  DefaultRekeyAfterMessages,
		RejectAfterMessages: DefaultRejectAfterMessages,
		KeepaliveTimeout:    DefaultKeepaliveTimeout,
		RekeyTimeout:        DefaultRekeyTimeout,
		RekeyJitter:         DefaultRekeyJitter,
		RekeyAttemptTime:    DefaultRekeyAttemptTime,
		ReplayWindow:        replay.DefaultWindow,
	}
}

// Validate reports the first inconsistency, naming config keys where they
// exist, as one line.
func (p Policy) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"rekey_after", p.RekeyAfterTime}, {"reject_after", p.RejectAfterTime}, {"keepalive timeout", p.KeepaliveTimeout},
		{"persistent_keepalive", p.PersistentKeepalive}, {"rekey timeout", p.RekeyTimeout}, {"rekey jitter", p.RekeyJitter},
		{"rekey attempt time", p.RekeyAttemptTime}} {
		if d.v > MaxDuration {
			return fmt.Errorf("%s %v is longer than the timers can count (at most %v)", d.name, d.v, MaxDuration)
		}
	}
	switch {
	case p.RekeyAfterTime <= 0:
		return fmt.Errorf("rekey_after %v must be positive", p.RekeyAfterTime)
	case p.RejectAfterTime <= p.RekeyAfterTime:
		return fmt.Errorf("reject_after %v must be greater than rekey_after %v", p.RejectAfterTime, p.RekeyAfterTime)
	case p.RekeyAfterMessages == 0:
		return fmt.Errorf("rekey_after_messages must be positive")
	case p.RejectAfterMessages <= p.RekeyAfterMessages:
		return fmt.Errorf("rekey_after_messages %d must be less than the reject-after bound %d", p.RekeyAfterMessages, p.RejectAfterMessages)
	case p.KeepaliveTimeout <= 0:
		return fmt.Errorf("keepalive timeout %v must be positive", p.KeepaliveTimeout)
	case p.PersistentKeepalive < 0:
		return fmt.Errorf("persistent_keepalive %v must not be negative (0 turns it off)", p.PersistentKeepalive)
	case p.RekeyTimeout <= 0:
		return fmt.Errorf("rekey timeout %v must be positive", p.RekeyTimeout)
	case p.RekeyJitter < 0:
		return fmt.Errorf("rekey jitter %v must not be negative", p.RekeyJitter)
	case p.RekeyAttemptTime < p.RekeyTimeout:
		return fmt.Errorf("rekey attempt time %v must be at least the rekey timeout %v", p.RekeyAttemptTime, p.RekeyTimeout)
	case p.RejectAfterTime <= p.KeepaliveTimeout+p.RekeyTimeout:
		return fmt.Errorf("reject_after %v must exceed keepalive timeout + rekey timeout (%v), or a receive-only initiator cannot renew in time",
			p.RejectAfterTime, p.KeepaliveTimeout+p.RekeyTimeout)
	}
	if _, err := replay.New(p.ReplayWindow, p.RejectAfterMessages); err != nil {
		return fmt.Errorf("replay_window: %v", err)
	}
	return nil
}
