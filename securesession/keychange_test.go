package securesession

import (
	"errors"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/session"
)

// The application's lookup may name another key for an ID whose Session
// already has its peer: it replaced the peer's public key, or revoked the
// pair's pre-shared key. A handshake under the new key is refused by the
// session core, as the daemon refuses one after a reload replaced the key;
// before, it was accepted onto the peer made with the old one. (Message 1
// does not depend on the PSK, so the responder consumes it with the
// lookup's new one.) The session made under the old key keeps working.
func TestChangedKeyIsRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		// change edits the directory and returns the key alice's new
		// Session initiates with.
		change  func(t *testing.T, dir map[string]handshake.PeerInfo, aliceKey handshake.PrivateKey) handshake.PrivateKey
		wantErr error
	}{
		{"public key replaced", func(t *testing.T, dir map[string]handshake.PeerInfo, _ handshake.PrivateKey) handshake.PrivateKey {
			replacement := keys(t)
			dir["alice"] = handshake.PeerInfo{PublicKey: replacement.PublicKey()}
			return replacement
		}, session.ErrPeerKeyChanged},
		{"pre-shared key changed", func(t *testing.T, dir map[string]handshake.PeerInfo, aliceKey handshake.PrivateKey) handshake.PrivateKey {
			for id, info := range dir {
				info.PresharedKey = handshake.PresharedKey{4, 5, 6}
				dir[id] = info
			}
			return aliceKey
		}, session.ErrPeerPSKChanged},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := &clock{now: t0}
			aliceKey, bobKey := keys(t), keys(t)
			directory := map[string]handshake.PeerInfo{
				"alice": {PublicKey: aliceKey.PublicKey()},
				"bob":   {PublicKey: bobKey.PublicKey()},
			}
			lookup := LookupFunc(func(id string) (handshake.PeerInfo, error) {
				if info, ok := directory[id]; ok {
					return info, nil
				}
				return handshake.PeerInfo{}, handshake.ErrUnknownPeer
			})
			mk := func(id string, k handshake.PrivateKey) *Session {
				t.Helper()
				s, err := New(Config{PeerID: id, PrivateKey: k, Peers: lookup, Now: clk.Now})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			alice, bob := mk("alice", aliceKey), mk("bob", bobKey)
			first, err := alice.Connect("bob")
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, bob, alice, [][]byte{first})
			if !bob.Established() || !alice.Established() {
				t.Fatal("no session under the first key")
			}

			newKey := c.change(t, directory, aliceKey)
			clk.now = clk.now.Add(time.Second) // past the responder's per-peer rate limit
			init, err := mk("alice", newKey).Connect("bob")
			if err != nil {
				t.Fatal(err)
			}
			indices := bob.reg.Len()
			res, err := bob.Unwrap(init)
			// ErrPeerPSKChanged wraps ErrPeerKeyChanged, which wraps
			// handshake.ErrKeyMismatch: one refusal family.
			if !errors.Is(err, c.wantErr) || !errors.Is(err, session.ErrPeerKeyChanged) || !errors.Is(err, handshake.ErrKeyMismatch) || len(res.Send) != 0 {
				t.Fatalf("handshake under the new key: %v, %d messages back; want %v and no answer", err, len(res.Send), c.wantErr)
			}
			if bob.reg.Len() != indices {
				t.Fatalf("the refused handshake left an index: %d indices, %d before", bob.reg.Len(), indices)
			}
			if _, _, next := bob.currentPeer().Slots(); next != nil {
				t.Fatal("the refused handshake installed a keypair")
			}
			msg, err := alice.Wrap([]byte("still here"))
			if err != nil {
				t.Fatal(err)
			}
			if res, err := bob.Unwrap(msg); err != nil || string(res.Data) != "still here" {
				t.Fatalf("the old session after the refusal: %q, %v", res.Data, err)
			}
		})
	}
}
