package tunnel

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"stunnel/handshake"
)

// FuzzPacketParsers feeds arbitrary bytes to every parser the packet path
// applies to bytes from the network or the TUN device.
func FuzzPacketParsers(f *testing.F) {
	f.Add(ipv4UDP("198.19.0.1", "198.19.0.2", []byte("x")))
	f.Add(ipv6UDP("fd00::1", "fd00::2", []byte("x")))
	f.Add([]byte{handshake.MessageTypeData, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		if idx, ok := dataReceiver(b); ok {
			if len(b) < headerLen+tagLen || idx != uint32(b[4])|uint32(b[5])<<8|uint32(b[6])<<16|uint32(b[7])<<24 {
				t.Fatalf("accepted %x as a data packet with index %d", b, idx)
			}
			_ = dataCounter(b)
		}
		// The reference: the addresses at their RFC 791 / 8200 offsets, the
		// length the header declares. A parser reading the wrong bytes, or
		// taking a packet of another version or one too short, fails here.
		var wantSrc, wantDst netip.Addr
		wantLen, wantOK := 0, false
		switch {
		case len(b) >= 20 && b[0]>>4 == 4:
			wantSrc, _ = netip.AddrFromSlice(b[12:16])
			wantDst, _ = netip.AddrFromSlice(b[16:20])
			wantLen = int(b[2])<<8 | int(b[3])
			wantOK = wantLen >= 20 && wantLen <= len(b)
		case len(b) >= 40 && b[0]>>4 == 6:
			wantSrc, _ = netip.AddrFromSlice(b[8:24])
			wantDst, _ = netip.AddrFromSlice(b[24:40])
			wantLen = 40 + (int(b[4])<<8 | int(b[5]))
			wantOK = wantLen <= len(b)
		}
		if src, n, ok := ipSource(b); ok != wantOK || ok && (src != wantSrc || n != wantLen) {
			t.Fatalf("ipSource(%x) = %v, %d, %v; want %v, %d, %v", b, src, n, ok, wantSrc, wantLen, wantOK)
		}
		if dst, ok := ipDestination(b); ok != wantDst.IsValid() || dst != wantDst {
			t.Fatalf("ipDestination(%x) = %v, %v; want %v", b, dst, ok, wantDst)
		}
	})
}

// FuzzReceiveDatagram throws arbitrary datagrams, from the peer's address and
// from a stranger's, at a running tunnel with an established session: none may
// crash it, reach its TUN device, or stop the real traffic.
func FuzzReceiveDatagram(f *testing.F) {
	p := newPair(f, nil)
	ping := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("ping"))
	var recorded [][]byte
	p.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		recorded = append(recorded, append([]byte(nil), b...))
		return true
	}
	p.a.tun.toTunnel <- ping
	p.b.expect(f, ping)
	p.net.filter = nil
	for _, r := range recorded {
		f.Add(r, true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{handshake.MessageTypeInitiation, 1, 0, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, fromPeer bool) {
		from := netip.MustParseAddrPort("198.18.0.66:1234")
		if fromPeer {
			from = netip.MustParseAddrPort(p.a.under)
		}
		p.net.inject(from, netip.MustParseAddrPort(p.b.under), b)
		p.a.tun.toTunnel <- ping
		select {
		case got := <-p.b.tun.fromTunnel:
			if !bytes.Equal(got, ping) {
				t.Fatalf("TUN got %x after injecting %x", got, b)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("traffic stopped after injecting %x", b)
		}
	})
}
