// Command overlayping is a securesession example that speaks to a running
// `stunnel up` daemon with no TUN device and no privileges: it is a peer of
// the daemon, sends ICMP echo requests from its overlay address to another
// overlay address through the session over UDP, and prints the replies.
//
//	overlayping -id laptop -key PRIVATE -peer gw=PUBLIC -endpoint 198.18.1.1:51820 \
//	    -from 198.19.1.9 -to 198.19.1.1 -count 3
//
// It exits 0 when every request was answered.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"stunnel/handshake"
	"stunnel/securesession"
)

func main() {
	id := flag.String("id", "", "our peer ID")
	key := flag.String("key", "", "our private key (base64)")
	peer := flag.String("peer", "", "the daemon as ID=PUBLICKEY")
	endpoint := flag.String("endpoint", "", "the daemon's UDP address")
	from := flag.String("from", "", "our overlay IPv4 address (in the daemon's allowed_ips for us)")
	to := flag.String("to", "", "the overlay IPv4 address to ping")
	count := flag.Int("count", 3, "echo requests")
	timeout := flag.Duration("timeout", 15*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*id, *key, *peer, *endpoint, *from, *to, *count, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "overlayping:", err)
		os.Exit(1)
	}
}

func run(id, key, peer, endpoint, from, to string, count int, timeout time.Duration) error {
	priv, err := handshake.ParsePrivateKey(key)
	if err != nil {
		return fmt.Errorf("-key: %v", err)
	}
	peerID, peerKey, ok := strings.Cut(peer, "=")
	pub, err := handshake.ParsePublicKey(peerKey)
	if !ok || err != nil {
		return errors.New("-peer must be ID=PUBLICKEY")
	}
	src, err1 := netip.ParseAddr(from)
	dst, err2 := netip.ParseAddr(to)
	if err1 != nil || err2 != nil || !src.Is4() || !dst.Is4() {
		return errors.New("-from and -to must be IPv4 addresses")
	}
	udp, err := net.Dial("udp", endpoint)
	if err != nil {
		return err
	}
	cfg := securesession.Config{PeerID: id, PrivateKey: priv, Payload: securesession.PayloadIP,
		Peers: securesession.LookupFunc(func(claimed string) (handshake.PeerInfo, error) {
			if claimed == peerID {
				return handshake.PeerInfo{PublicKey: pub}, nil
			}
			return handshake.PeerInfo{}, handshake.ErrUnknownPeer
		})}
	conn, err := securesession.Dial(cfg, peerID, securesession.PacketTransport(udp))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	const ident = 0x5353
	for seq := 1; seq <= count; seq++ {
		start := time.Now()
		if err := conn.Send(ctx, echoRequest(src, dst, ident, uint16(seq))); err != nil {
			return err
		}
		for {
			pkt, err := conn.Receive(ctx)
			if err != nil {
				return fmt.Errorf("waiting for reply %d: %w", seq, err)
			}
			if isEchoReply(pkt, dst, src, ident, uint16(seq)) {
				fmt.Printf("reply from %s: seq=%d time=%s\n", dst, seq, time.Since(start).Round(time.Microsecond))
				break
			}
		}
	}
	return nil
}

func echoRequest(src, dst netip.Addr, ident, seq uint16) []byte {
	p := make([]byte, 20+8+16)
	p[0], p[8], p[9] = 0x45, 64, 1 // IPv4, TTL, ICMP
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	icmp := p[20:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], ident)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], "securesession!!!")
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return p
}

func isEchoReply(p []byte, from, to netip.Addr, ident, seq uint16) bool {
	if len(p) < 28 || p[0]>>4 != 4 || p[9] != 1 {
		return false
	}
	hl := int(p[0]&0xf) * 4
	if len(p) < hl+8 || netip.AddrFrom4([4]byte(p[12:16])) != from || netip.AddrFrom4([4]byte(p[16:20])) != to {
		return false
	}
	icmp := p[hl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == ident && binary.BigEndian.Uint16(icmp[6:]) == seq
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
