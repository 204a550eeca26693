package netnstests

import (
	"strings"
	"testing"
)

// Scenario 9: wrong credentials. a initiates to b; b refuses. Neither gets a
// session, b's show records a refusal with the reason, a's show says the
// handshake failed, and both logs say so.
func TestWrongCredentials(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(a, b *node)
		claim  func(a *node) string // the peer ID b sees a claim
		reason string               // in b's refusal and b's log
		// told: b answers with an authenticated refusal, so a learns the
		// reason too; otherwise b stays silent (it must not help a prober)
		// and a can only say its handshake went unanswered.
		told bool
	}{
		{
			name: "wrong public key",
			// b has another key on file for a's ID.
			edit:   func(a, b *node) { b.Peers[0].PublicKey = newKeyPair(b.l.t).public },
			claim:  func(a *node) string { return a.ID },
			reason: "key mismatch",
		},
		{
			name:   "unknown peer id",
			edit:   func(a, b *node) { a.ID = "host-a-renamed" },
			claim:  func(a *node) string { return a.ID },
			reason: "unknown peer id",
		},
		{
			name: "cipher mismatch",
			edit: func(a, b *node) {
				a.Session = []string{`cipher = "chacha20poly1305"`}
				b.Session = []string{`cipher = "aes256gcm"`}
			},
			claim:  func(a *node) string { return a.ID },
			reason: "cipher mismatch",
			told:   true,
		},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			l := newLab(t)
			a, b := l.twoHosts(func(a, b *node) {
				b.Peers[0].Endpoint = "" // only a initiates, so the roles are known
				tc.edit(a, b)
			})
			if err := tryPing(a.ns, overB, 3, 1); err == nil {
				t.Fatal("ping went through the tunnel with wrong credentials")
			}
			claimed := tc.claim(a)
			waitFor(t, sessionWait, "b to show a refusal of "+claimed, func() bool {
				s, err := b.tryShow()
				_, ok := refusal(s, claimed)
				return err == nil && ok
			})
			r, _ := refusal(b.show(), claimed)
			if !strings.Contains(strings.ToLower(r.Reason), tc.reason) || r.Count < 1 || !strings.HasPrefix(r.Endpoint, a.Underlay+":") {
				t.Errorf("b's refusal: %+v, want reason %q from %s", r, tc.reason, a.Underlay)
			}
			if !strings.Contains(strings.ToLower(b.log()), tc.reason) {
				t.Errorf("b's log does not say %q", tc.reason)
			}
			waitFor(t, sessionWait, "a to show why its handshake with b failed", func() bool {
				s, err := a.tryShow()
				p, ok := findPeer(s, b.ID)
				return err == nil && ok && p.LastError != ""
			})
			pa := a.peer(b.ID)
			if pa.SessionID != "" || pa.Handshakes != 0 {
				t.Errorf("a got a session with b: %+v", pa)
			}
			if tc.told && !strings.Contains(strings.ToLower(pa.LastError), tc.reason) {
				t.Errorf("a's last_error %q does not say %q", pa.LastError, tc.reason)
			}
			if alog := strings.ToLower(a.log()); !strings.Contains(alog, b.ID) || (tc.told && !strings.Contains(alog, tc.reason)) {
				t.Errorf("a's log does not name peer %s and why its handshake failed", b.ID)
			}
			for _, p := range b.show().Peers {
				if p.SessionID != "" || p.Handshakes != 0 {
					t.Errorf("b got a session: %+v", p)
				}
			}
		})
	}
}
