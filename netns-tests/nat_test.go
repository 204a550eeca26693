package netnstests

import (
	"strings"
	"testing"
)

// A site behind NAT with persistent_keepalive comes up by itself: it
// handshakes at start, so the site that is NOT behind the NAT (and has no
// endpoint for it, as it cannot know one) reaches it without anyone behind
// the NAT sending traffic first. The NAT is real: nftables masquerade in a
// middle namespace, and the open site has no route to the NAT'd site's
// underlay address, only to the NAT's outside one.
func TestNATSiteComesUpByItself(t *testing.T) {
	l := newLab(t)
	inside, nat, outside := l.ns("natin"), l.ns("nat"), l.ns("natout")
	l.veth(inside, "u0", "198.18.40.2/24", nat, "in0", "198.18.40.1/24")
	l.veth(nat, "out0", "198.18.41.1/24", outside, "u0", "198.18.41.2/24")
	l.run(inside, "ip", "route", "add", "default", "via", "198.18.40.1")
	nftMasquerade(l, nat, "out0")

	// IPv4 overlay only: nothing behind the NAT sends anything by itself.
	a := l.newNode(inside, "nat-a", "198.18.40.2", "198.19.40.1/24")
	b := l.newNode(outside, "open-b", "198.18.41.2", "198.19.40.2/24")
	a.addPeer(b, true, "198.19.40.2/32")
	a.Peers[0].Keepalive = "25s"
	b.addPeer(a, false, "198.19.40.1/32")
	b.start()
	a.start()

	// b learns a's (translated) endpoint from a's own handshake, before any
	// traffic: no one behind the NAT talked.
	p := b.waitSession(a.ID, sessionWait)
	if !strings.HasPrefix(p.Endpoint, "198.18.41.1:") {
		t.Fatalf("b sees a at %q, want the NAT's outside address 198.18.41.1", p.Endpoint)
	}
	// Traffic started from the open side.
	ping(t, outside, "198.19.40.1", 3)
	tcpStream(t, outside, inside, "198.19.40.1", streamOpts{Size: 1 << 20})
}

// nftMasquerade loads a masquerading NAT for traffic leaving ns through oif.
func nftMasquerade(l *lab, ns, oif string) {
	l.t.Helper()
	rules := strings.Join([]string{
		"table ip stunnel_test_nat {",
		"  chain post {",
		"    type nat hook postrouting priority srcnat; policy accept;",
		"    oifname \"" + oif + "\" masquerade",
		"  }",
		"}",
	}, "\n")
	l.run(ns, "sh", "-c", "printf '%s\\n' \"$0\" | nft -f -", rules)
}
