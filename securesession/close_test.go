package securesession

import (
	"crypto/rand"
	"errors"
	"testing"

	"stunnel/handshake"
)

// Close promises to zero every key: besides the session keys, the static
// private key (the Session's Config copy, the Host's handshake config, the
// responder's own copy) and the peer's pre-shared key. The caller's Config
// holds the keys by value and stays the caller's.
func TestCloseZeroesLongTermSecrets(t *testing.T) {
	aliceKey, bobKey := keys(t), keys(t)
	var psk handshake.PresharedKey
	rand.Read(psk[:])
	directory := map[string]handshake.PeerInfo{
		"alice": {PublicKey: aliceKey.PublicKey(), PresharedKey: psk},
		"bob":   {PublicKey: bobKey.PublicKey(), PresharedKey: psk},
	}
	lookup := LookupFunc(func(id string) (handshake.PeerInfo, error) {
		if info, ok := directory[id]; ok {
			return info, nil
		}
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	})
	c := &clock{now: t0}
	bobCfg := Config{PeerID: "bob", PrivateKey: bobKey, Peers: lookup, Now: c.Now}
	newAlice := func() *Session {
		s, err := New(Config{PeerID: "alice", PrivateKey: aliceKey, Peers: lookup, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bob, err := New(bobCfg)
	if err != nil {
		t.Fatal(err)
	}
	alice := newAlice()
	first, err := alice.Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, bob, alice, [][]byte{first}) // bob answered: his responder used its key copy
	if !bob.Established() {
		t.Fatal("not established")
	}
	peer := bob.currentPeer()

	bob.Close()
	if !bob.cfg.PrivateKey.IsZero() || !bob.host.Config().PrivateKey.IsZero() {
		t.Fatal("Close left the static private key in the session's configuration")
	}
	if !peer.PresharedKey().IsZero() {
		t.Fatal("Close left the peer's pre-shared key")
	}
	// The responder's copy: a new initiation from alice finds no key to
	// answer with.
	first, err = newAlice().Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Unwrap(first); !errors.Is(err, handshake.ErrStaticKey) {
		t.Fatalf("a closed session answered an initiation: %v, want ErrStaticKey", err)
	}
	if bobCfg.PrivateKey != bobKey || bobCfg.PrivateKey.IsZero() {
		t.Fatal("Close zeroed the caller's Config")
	}
}
