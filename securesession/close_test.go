package securesession

import (
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/waitfor"
	"stunnel/rekey"
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
	// A closed Session refuses; and the responder's copy of the key is
	// gone: its host, asked directly, finds no key to answer with.
	first, err = newAlice().Connect("bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Unwrap(first); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("a closed session took an initiation: %v, want ErrSessionClosed", err)
	}
	if _, _, err := bob.host.ConsumeInitiation(first, 1); !errors.Is(err, handshake.ErrStaticKey) {
		t.Fatalf("the closed session's responder answered an initiation: %v, want ErrStaticKey", err)
	}
	if bobCfg.PrivateKey != bobKey || bobCfg.PrivateKey.IsZero() {
		t.Fatal("Close zeroed the caller's Config")
	}
}

// Close may run while other goroutines use the Session (it is safe for
// concurrent use): it waits for the calls in progress, so no seal, open or
// handshake reads a key while it is zeroed (go test -race), and every call
// after it fails with ErrSessionClosed.
func TestCloseWhileInUse(t *testing.T) {
	p := newPair(t, rekey.DefaultPolicy())
	p.connect(t)
	var wg sync.WaitGroup
	var opened atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := p.alice.Wrap([]byte("in flight"))
				if errors.Is(err, ErrSessionClosed) {
					return
				}
				if err != nil {
					t.Errorf("Wrap: %v", err)
					return
				}
				if _, err := p.bob.Unwrap(msg); errors.Is(err, ErrSessionClosed) {
					return
				} else if err != nil {
					t.Errorf("Unwrap: %v", err)
					return
				}
				opened.Add(1)
				p.bob.Tick()
			}
		}()
	}
	waitfor.Cond(t, 5*time.Second, time.Millisecond, "messages opened while both sides are open", func() bool { return opened.Load() > 100 })
	p.bob.Close()
	p.alice.Close()
	wg.Wait()
	if _, err := p.alice.Wrap([]byte("late")); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Wrap after Close: %v, want ErrSessionClosed", err)
	}
	if _, err := p.bob.Unwrap([]byte{handshake.MessageTypeData, handshake.ProtocolVersion, 0, 0}); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Unwrap after Close: %v, want ErrSessionClosed", err)
	}
	if msgs := p.bob.Tick(); msgs != nil {
		t.Errorf("Tick after Close gave %d messages", len(msgs))
	}
	if _, err := p.alice.Connect("bob"); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Connect after Close: %v, want ErrSessionClosed", err)
	}
	p.alice.Close() // twice: harmless
}
