package securesession

import (
	"errors"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/session"
)

// The application's lookup may name another key for an ID whose Session
// already has its peer (it replaced the peer's key). A handshake under the
// new key is refused by the session core, as the daemon refuses one after
// a reload replaced the key; before, it was accepted onto the peer made
// with the old key. The session made under the old key keeps working.
func TestReplacedPeerKeyIsRefused(t *testing.T) {
	clk := &clock{now: t0}
	aliceKey, bobKey, replacement := keys(t), keys(t), keys(t)
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

	directory["alice"] = handshake.PeerInfo{PublicKey: replacement.PublicKey()}
	clk.now = clk.now.Add(time.Second) // past the responder's per-peer rate limit
	init, err := mk("alice", replacement).Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	indices := bob.reg.Len()
	res, err := bob.Unwrap(init)
	if !errors.Is(err, session.ErrPeerKeyChanged) || !errors.Is(err, handshake.ErrKeyMismatch) || len(res.Send) != 0 {
		t.Fatalf("handshake under the replaced key: %v, %d messages back; want session.ErrPeerKeyChanged and no answer", err, len(res.Send))
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
}

// The same for the pre-shared key: the application's lookup now gives
// another PSK for the pair (it revoked the old one). A handshake under the
// new PSK is refused by the session core on the Session whose peer was
// made with the old one, as for a replaced public key (message 1 does not
// depend on the PSK, so the responder consumes it with the lookup's new
// one). Before, it was answered and installed on that peer.
func TestChangedPSKIsRefused(t *testing.T) {
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
		t.Fatal("no session under the first PSK")
	}

	for id, info := range directory {
		info.PresharedKey = handshake.PresharedKey{4, 5, 6}
		directory[id] = info
	}
	clk.now = clk.now.Add(time.Second) // past the responder's per-peer rate limit
	init, err := mk("alice", aliceKey).Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	indices := bob.reg.Len()
	res, err := bob.Unwrap(init)
	if !errors.Is(err, session.ErrPeerPSKChanged) || !errors.Is(err, session.ErrPeerKeyChanged) || len(res.Send) != 0 {
		t.Fatalf("handshake under the new PSK: %v, %d messages back; want session.ErrPeerPSKChanged and no answer", err, len(res.Send))
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
}
