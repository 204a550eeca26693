package netnstests

import (
	"net/netip"
	"testing"
	"time"
)

// Scenario 2: site-to-site. LAN host lanA sits behind gateway gwA, lanB
// behind gwB; the gateways' tunnel carries whole subnets (allowed_ips), and a
// packet gwA forges with a source outside its allowed_ips is dropped by gwB
// and counted, never delivered.
func TestSiteToSite(t *testing.T) {
	l := newLab(t)
	lanA, gwA, gwB, lanB := l.ns("lana"), l.ns("gwa"), l.ns("gwb"), l.ns("lanb")
	const (
		netA, netB         = "198.19.10.0/24", "198.19.20.0/24"
		lanAAddr, lanBAddr = "198.19.10.2", "198.19.20.2"
		forgedSrc          = "198.19.30.5" // in no one's allowed_ips
	)
	l.veth(lanA, "e0", lanAAddr+"/24", gwA, "lan", "198.19.10.1/24")
	l.veth(gwA, "u0", "198.18.2.1/24", gwB, "u0", "198.18.2.2/24")
	l.veth(gwB, "lan", "198.19.20.1/24", lanB, "e0", lanBAddr+"/24")
	l.run(lanA, "ip", "route", "add", netB, "via", "198.19.10.1")
	l.run(lanB, "ip", "route", "add", netA, "via", "198.19.20.1")

	a := l.newNode(gwA, "gw-a", "198.18.2.1", "198.19.2.1/24")
	b := l.newNode(gwB, "gw-b", "198.18.2.2", "198.19.2.2/24")
	a.addPeer(b, true, "198.19.2.2/32", netB)
	b.addPeer(a, true, "198.19.2.1/32", netA)
	a.start()
	b.start()

	// LAN to LAN both ways, through the gateways' routes to the tunnel.
	pingUntil(t, lanA, lanBAddr, sessionWait)
	ping(t, lanA, lanBAddr, 3)
	ping(t, lanB, lanAAddr, 3)
	tcpStream(t, lanA, lanB, lanBAddr, streamOpts{Size: 4 << 20})
	tcpStream(t, lanB, lanA, lanAAddr, streamOpts{Size: 4 << 20})

	// A UDP listener on lanB sees whatever gwB delivers.
	counter := listenCounter(t, lanB, lanBAddr)
	dst := counter.addr()
	before := b.drops(a.ID, dropSourceNotAllowed)

	// gwA sends, into its own tunnel, a datagram whose source is outside the
	// allowed_ips gwB has for it.
	forged := udp4Packet(netip.AddrPortFrom(netip.MustParseAddr(forgedSrc), 40000), dst, []byte("forged"))
	sendRawIPv4(t, gwA, [][]byte{forged})
	waitFor(t, 5*time.Second, "gw-b to count the forged packet as source_not_allowed", func() bool {
		return b.drops(a.ID, dropSourceNotAllowed) > before
	})

	// Then a legitimate datagram from lanA, which must arrive alone.
	newUDPSender(t, lanA, dst).sendRaw(t, []byte("legit"))
	waitFor(t, 5*time.Second, "the legitimate datagram to reach lanB", func() bool {
		_, _, other := counter.counts()
		return other >= 1
	})
	if got := counter.others(); len(got) != 1 || got[0] != "legit" {
		t.Fatalf("lanB received %q, want only \"legit\" (the forged packet must not be delivered)", got)
	}
	if n := b.drops(a.ID, dropSourceNotAllowed); n != before+1 {
		t.Errorf("gw-b counts %d source_not_allowed drops, want %d", n, before+1)
	}
}
