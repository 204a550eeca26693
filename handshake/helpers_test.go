package handshake

import (
	"errors"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
)

func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// peerMap is a PeerLookup backed by a map, as the config will be.
type peerMap map[string]PeerInfo

func (m peerMap) LookupPeer(id []byte) (PeerInfo, error) {
	p, ok := m[string(id)]
	if !ok {
		return PeerInfo{}, ErrUnknownPeer
	}
	return p, nil
}

type host struct {
	id      string
	cfg     *Config
	pub     PublicKey
	resp    *Responder
	checker *CookieChecker
	peers   peerMap
}

func newHost(t testing.TB, id string, clk *fakeclock.Clock) *host {
	t.Helper()
	priv, err := GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	peers := peerMap{}
	cfg := &Config{PeerID: []byte(id), PrivateKey: priv, Peers: peers, Now: clk.Now}
	h := &host{id: id, cfg: cfg, pub: priv.PublicKey(), peers: peers}
	h.resp = NewResponder(cfg)
	h.checker = NewCookieChecker(h.pub, clk.Now, nil)
	return h
}

// know makes h accept initiations from o.
func (h *host) know(o *host) { h.peers[o.id] = PeerInfo{PublicKey: o.pub, ID: o.id} }

func (h *host) infoOf(o *host) PeerInfo { return PeerInfo{PublicKey: o.pub, ID: o.id} }

// initiate builds a MAC'd message 1 from h to o.
func (h *host) initiate(t testing.TB, o *host, idx uint32) (*Initiation, []byte) {
	t.Helper()
	in, err := NewInitiation(h.cfg, h.infoOf(o), idx)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	NewCookieGenerator(o.pub, h.cfg.Now).AddMACs(msg)
	return in, msg
}

// handshake runs a complete exchange from a to b and returns both sessions.
func handshake(t testing.TB, clk *fakeclock.Clock, a, b *host) (sa, sb *Session) {
	t.Helper()
	clk.Advance(time.Second) // past the per-peer rate limit
	in, msg := a.initiate(t, b, 0x11111111)
	if !b.checker.CheckMAC1(msg) {
		t.Fatal("CheckMAC1 rejects a genuine initiation")
	}
	resp, sb, err := b.resp.ConsumeInitiation(msg, 0x22222222)
	if err != nil {
		t.Fatalf("ConsumeInitiation: %v", err)
	}
	if !a.checker.CheckMAC1(resp) {
		t.Fatal("CheckMAC1 rejects a genuine response")
	}
	sa, err = in.ConsumeResponse(resp)
	if err != nil {
		t.Fatalf("ConsumeResponse: %v", err)
	}
	return sa, sb
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func fixMAC1(msg []byte, receiver PublicKey) {
	k := mac1Key(receiver)
	off, _, _ := macOffsets(msg)
	mac(msg[off:off+macLen], k[:], msg[:off])
}

func pair(t testing.TB) (*fakeclock.Clock, *host, *host) {
	clk := newFakeClock()
	a, b := newHost(t, "site-a", clk), newHost(t, "site-b", clk)
	a.know(b)
	b.know(a)
	return clk, a, b
}
