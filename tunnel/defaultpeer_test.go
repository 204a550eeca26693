package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"stunnel/conf"
)

// A peer with 0.0.0.0/0 beside a peer with a narrower prefix (conf lets a
// /0 overlap only another /0): the longest match decides both ways, so the
// /0 peer's packets from "the internet" are delivered, and one claiming an
// address of the narrower peer is dropped, never passed as that peer's.
func TestDefaultPeerCannotSendAsANarrowerPeer(t *testing.T) {
	p := newPair(t, func(a, b *conf.Config) {
		b.Peers[0].AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
		b.Peers = append(b.Peers, conf.Peer{ID: "gamma", PublicKey: mustKey(t).PublicKey(), Endpoint: "198.18.0.3:51820",
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.7.0/24")}})
	})
	send := func(src string) bool {
		t.Helper()
		p.a.tun.toTunnel <- ipv4UDP(src, "198.19.0.2", []byte("from "+src))
		select {
		case got := <-p.b.tun.fromTunnel:
			if s := netip.AddrFrom4([4]byte(got[12:16])).String(); s != src {
				t.Fatalf("b delivered a packet from %s, want %s", s, src)
			}
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	waitFor(t, 5*time.Second, "a first packet from the internet through alpha's /0", func() bool { return send("198.19.99.1") })
	// In order on one session: had b delivered the first, send would see
	// its source instead of the second's.
	p.a.tun.toTunnel <- ipv4UDP("198.19.7.5", "198.19.0.2", []byte("as gamma"))
	if !send("198.19.99.2") {
		t.Fatal("b did not deliver alpha's next packet from the internet")
	}
	alpha := -1
	peers := p.b.dev.Status().Peers
	for i, st := range peers {
		if st.ID == "alpha" {
			alpha = i
		}
	}
	if alpha < 0 {
		t.Fatalf("b's status lists no peer alpha: %+v", peers)
	}
	if n := peers[alpha].Drops["source_not_allowed"]; n != 1 {
		t.Errorf("alpha's source_not_allowed drops: %d, want 1", n)
	}
}
