package tundev

import (
	"encoding/binary"
	"fmt"
)

// Test packet builders and a slow reference checksum, segmenter and
// verifier, written independently of the code under test.

type spec struct {
	v6       bool
	udp      bool
	src, dst []byte // 4 or 16 bytes; nil: defaults
	sport    uint16
	dport    uint16
	seq, ack uint32
	flags    uint8 // TCP flags; 0 means ACK
	win      uint16
	opts     []byte // TCP options, a multiple of 4 bytes
	payload  []byte
	id       uint16
	tos, ttl uint8
	noDF     bool
	udpZero  bool // IPv4 UDP with checksum 0
}

var (
	v4a = []byte{198, 19, 250, 1}
	v4b = []byte{198, 19, 250, 2}
	v6a = []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	v6b = []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

func build(s spec) []byte {
	ipLen := ipv4HdrMin
	if s.v6 {
		ipLen = ipv6HdrLen
	}
	l4Len := tcpHdrMin + len(s.opts)
	if s.udp {
		l4Len = udpHdrLen
	}
	pkt := make([]byte, ipLen+l4Len+len(s.payload))
	src, dst := s.src, s.dst
	if src == nil {
		src, dst = v4a, v4b
		if s.v6 {
			src, dst = v6a, v6b
		}
	}
	proto := byte(protoTCP)
	if s.udp {
		proto = protoUDP
	}
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	if s.v6 {
		pkt[0] = 0x60 | s.tos>>4
		pkt[1] = s.tos << 4
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-ipv6HdrLen))
		pkt[6], pkt[7] = proto, ttl
		copy(pkt[8:], src)
		copy(pkt[24:], dst)
	} else {
		pkt[0], pkt[1] = 0x45, s.tos
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(pkt[4:], s.id)
		if !s.noDF {
			pkt[6] = ipv4FlagDF
		}
		pkt[8], pkt[9] = ttl, proto
		copy(pkt[12:], src)
		copy(pkt[16:], dst)
	}
	l4 := pkt[ipLen:]
	binary.BigEndian.PutUint16(l4[0:], s.sport)
	binary.BigEndian.PutUint16(l4[2:], s.dport)
	if s.udp {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[udpHdrLen:], s.payload)
	} else {
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], s.ack)
		l4[12] = byte((tcpHdrMin+len(s.opts))/4) << 4
		l4[13] = s.flags
		if s.flags == 0 {
			l4[13] = tcpFlagACK
		}
		binary.BigEndian.PutUint16(l4[14:], s.win)
		copy(l4[tcpHdrMin:], s.opts)
		copy(l4[tcpHdrMin+len(s.opts):], s.payload)
	}
	refFixChecksums(pkt)
	if s.udp && s.udpZero && !s.v6 {
		l4[6], l4[7] = 0, 0
	}
	return pkt
}

// refSum is the RFC 1071 sum, one 16-bit word at a time.
func refSum(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}

// refLayout finds the IP header length, protocol and pseudo-header sum of a
// well-formed packet.
func refLayout(pkt []byte) (ipLen int, proto byte, pseudo uint32) {
	if pkt[0]>>4 == 6 {
		ipLen, proto = ipv6HdrLen, pkt[6]
		pseudo = refSum(pkt[8:40], 0)
	} else {
		ipLen, proto = int(pkt[0]&0xf)*4, pkt[9]
		pseudo = refSum(pkt[12:20], 0)
	}
	return ipLen, proto, pseudo + uint32(proto) + uint32(len(pkt)-ipLen)
}

// refFixChecksums recomputes the IPv4 header and TCP/UDP checksums.
func refFixChecksums(pkt []byte) {
	ipLen, _, _ := refLayout(pkt)
	if pkt[0]>>4 == 4 {
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^uint16(refSum(pkt[:ipLen], 0)))
	}
	refFixL4(pkt)
}

// refFixL4 recomputes the TCP/UDP checksum only.
func refFixL4(pkt []byte) {
	ipLen, proto, pseudo := refLayout(pkt)
	at := ipLen + tcpCsumOff
	if proto == protoUDP {
		at = ipLen + udpCsumOff
	}
	pkt[at], pkt[at+1] = 0, 0
	c := ^uint16(refSum(pkt[ipLen:], pseudo))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], c)
}

// refVerify says what is wrong with a packet's lengths or checksums.
func refVerify(pkt []byte) error {
	if len(pkt) < ipv4HdrMin {
		return fmt.Errorf("%d bytes", len(pkt))
	}
	ipLen, proto, pseudo := refLayout(pkt)
	if pkt[0]>>4 == 4 {
		if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
			return fmt.Errorf("IPv4 total length %d, packet %d", binary.BigEndian.Uint16(pkt[2:]), len(pkt))
		}
		if refSum(pkt[:ipLen], 0) != 0xffff {
			return fmt.Errorf("IPv4 header checksum wrong")
		}
	} else if int(binary.BigEndian.Uint16(pkt[4:]))+ipv6HdrLen != len(pkt) {
		return fmt.Errorf("IPv6 payload length wrong")
	}
	if proto == protoUDP && int(binary.BigEndian.Uint16(pkt[ipLen+4:])) != len(pkt)-ipLen {
		return fmt.Errorf("UDP length wrong")
	}
	if refSum(pkt[ipLen:], pseudo) != 0xffff {
		return fmt.Errorf("L4 checksum wrong")
	}
	return nil
}

// refSegment is a slow, obvious GSO segmenter: the test's model of what
// the kernel does with a frame Write produced.
func refSegment(h virtioHdr, frame []byte) [][]byte {
	ipLen, proto, _ := refLayout(frame)
	hdrLen := ipLen + udpHdrLen
	if proto == protoTCP {
		hdrLen = ipLen + int(frame[ipLen+12]>>4)*4
	}
	var out [][]byte
	payload := frame[hdrLen:]
	for i := 0; len(payload) > 0; i++ {
		n := min(int(h.gsoSize), len(payload))
		seg := append(append([]byte{}, frame[:hdrLen]...), payload[:n]...)
		payload = payload[n:]
		if seg[0]>>4 == 4 {
			binary.BigEndian.PutUint16(seg[2:], uint16(len(seg)))
			binary.BigEndian.PutUint16(seg[4:], binary.BigEndian.Uint16(frame[4:])+uint16(i))
		} else {
			binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)-ipv6HdrLen))
		}
		if proto == protoUDP {
			binary.BigEndian.PutUint16(seg[ipLen+4:], uint16(len(seg)-ipLen))
		} else {
			binary.BigEndian.PutUint32(seg[ipLen+4:], binary.BigEndian.Uint32(frame[ipLen+4:])+uint32(i*int(h.gsoSize)))
			if len(payload) > 0 {
				seg[ipLen+13] &^= tcpFlagFIN | tcpFlagPSH
			}
			if i > 0 {
				seg[ipLen+13] &^= tcpFlagCWR
			}
		}
		refFixChecksums(seg)
		out = append(out, seg)
	}
	return out
}

// superFrame makes what the kernel hands Read for a GSO send: one header
// set, the whole payload, lengths of the whole, pseudo-header checksum.
func superFrame(s spec, gsoSize int) (virtioHdr, []byte) {
	pkt := build(s)
	ipLen, proto, pseudo := refLayout(pkt)
	h := virtioHdr{flags: virtioFlagNeedsCsum, gsoSize: uint16(gsoSize), csumStart: uint16(ipLen)}
	at := ipLen + tcpCsumOff
	h.hdrLen = uint16(ipLen + tcpHdrMin + len(s.opts))
	switch {
	case proto == protoUDP:
		at = ipLen + udpCsumOff
		h.gsoType, h.csumOffset, h.hdrLen = gsoUDPL4, udpCsumOff, uint16(ipLen+udpHdrLen)
	case s.v6:
		h.gsoType, h.csumOffset = gsoTCPv6, tcpCsumOff
	default:
		h.gsoType, h.csumOffset = gsoTCPv4, tcpCsumOff
	}
	binary.BigEndian.PutUint16(pkt[at:], uint16(refSum(nil, pseudo)))
	return h, pkt
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}
