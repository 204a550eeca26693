package rekey

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultPolicyIsValid(t *testing.T) {
	p := DefaultPolicy()
	if err := p.Validate(); err != nil {
		t.Fatalf("DefaultPolicy().Validate() = %v", err)
	}
	if p.RejectAfterMessages != 1<<64-1<<13-1 {
		t.Errorf("RejectAfterMessages = %d, want 2^64-2^13-1", p.RejectAfterMessages)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Policy)
		want   string // substring of the error
	}{
		{"zero rekey_after", func(p *Policy) { p.RekeyAfterTime = 0 }, "rekey_after"},
		{"reject_after not after rekey_after", func(p *Policy) { p.RejectAfterTime = p.RekeyAfterTime }, "reject_after"},
		{"zero rekey_after_messages", func(p *Policy) { p.RekeyAfterMessages = 0 }, "rekey_after_messages"},
		{"reject messages not above rekey messages", func(p *Policy) { p.RejectAfterMessages = p.RekeyAfterMessages }, "rekey_after_messages"},
		{"zero keepalive timeout", func(p *Policy) { p.KeepaliveTimeout = 0 }, "keepalive"},
		{"negative persistent keepalive", func(p *Policy) { p.PersistentKeepalive = -time.Second }, "persistent_keepalive"},
		{"zero rekey timeout", func(p *Policy) { p.RekeyTimeout = 0 }, "rekey timeout"},
		{"negative jitter", func(p *Policy) { p.RekeyJitter = -1 }, "jitter"},
		{"attempt time under rekey timeout", func(p *Policy) { p.RekeyAttemptTime = time.Second }, "attempt"},
		{"reject_after too short to renew", func(p *Policy) { p.RekeyAfterTime = time.Second; p.RejectAfterTime = 15 * time.Second }, "reject_after"},
		{"replay window not a power of two", func(p *Policy) { p.ReplayWindow = 1000 }, "replay_window"},
		{"replay window too small", func(p *Policy) { p.ReplayWindow = 64 }, "replay_window"},
		// 3*RejectAfterTime would wrap negative: keys zeroed at every tick.
		{"reject_after past what the timers count", func(p *Policy) { p.RejectAfterTime = 900000 * time.Hour }, "reject_after"},
		{"keepalive past what the timers count", func(p *Policy) { p.KeepaliveTimeout = 1<<63 - 1 }, "keepalive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			tt.mutate(&p)
			err := p.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Validate() = %q, want one line mentioning %q", err, tt.want)
			}
		})
	}
}
