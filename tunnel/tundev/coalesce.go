package tundev

import (
	"bytes"
	"encoding/binary"
)

// How Write treats a packet.
const (
	kindRaw = iota // anything but a whole TCP/UDP packet: never coalesced
	kindTCP        // whole TCP packet: may be coalesced
	kindUDP        // whole UDP packet with a checksum: same, with USO
)

// Whether a packet's own checksums were found right. A packet is written
// byte for byte as it was decrypted unless it is merged into a GSO frame,
// and it is merged only after its IPv4 header and TCP/UDP checksums were
// verified: the frame's checksums are recomputed (the kernel fills them in
// from NEEDS_CSUM), so merging an unverified packet would turn bytes its
// receiver must reject into bytes it accepts (Linux GRO and wireguard-go
// verify before merging for the same reason).
const (
	csumUnknown = iota // not checked yet: checked only when it could merge
	csumGood
	csumBad
)

// pktInfo is what planning learnt about one packet of a Write batch.
type pktInfo struct {
	kind     uint8
	csum     uint8 // csumUnknown, csumGood or csumBad
	v6       bool
	coalesce bool // may share a GSO frame with others of its flow
	flags    uint8
	id       uint16
	seq      uint32
	ipLen    int // IP header length
	hdrLen   int // IP + L4 header length
	payload  int // L4 payload bytes
}

// group is packets written as one frame: a lone packet or a GSO train.
type group struct {
	first, last int // packet indices; planner.next links first to last
	n           int
	total       int // IP bytes of the whole frame
	gsoSize     int // payload of the first; every other is <= it
	closed      bool
}

// planner plans a Write batch: which packets go out as one GSO frame. It is
// scratch kept between calls so planning allocates nothing.
type planner struct {
	uso    bool // the device accepts gso_type UDP_L4
	info   []pktInfo
	next   []int // next[i]: the packet after i in its group, -1 after the last
	groups []group
}

// classify parses pkt just enough to decide how it may be written. Anything
// malformed is kindRaw: the kernel gets it as is and drops it.
func classify(pkt []byte, uso bool) pktInfo {
	var p pktInfo
	if len(pkt) < ipv4HdrMin {
		return p
	}
	var proto uint8
	switch pkt[0] >> 4 {
	case 4:
		p.ipLen = int(pkt[0]&0xf) * 4
		if p.ipLen < ipv4HdrMin || p.ipLen > len(pkt) || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) ||
			pkt[6]&ipv4FlagMF != 0 || binary.BigEndian.Uint16(pkt[6:])&0x1fff != 0 {
			return p
		}
		proto = pkt[9]
		p.id = binary.BigEndian.Uint16(pkt[4:])
	case 6:
		if len(pkt) < ipv6HdrLen || int(binary.BigEndian.Uint16(pkt[4:]))+ipv6HdrLen != len(pkt) {
			return p
		}
		p.ipLen, p.v6, proto = ipv6HdrLen, true, pkt[6]
	default:
		return p
	}
	l4 := pkt[p.ipLen:]
	switch proto {
	case protoTCP:
		if len(l4) < tcpHdrMin {
			return p
		}
		doff := int(l4[12]>>4) * 4
		if doff < tcpHdrMin || doff > len(l4) {
			return p
		}
		p.kind, p.hdrLen = kindTCP, p.ipLen+doff
		p.seq = binary.BigEndian.Uint32(l4[4:])
		p.flags = l4[13]
		p.payload = len(l4) - doff
		p.coalesce = p.payload > 0 && (p.flags == tcpFlagACK || p.flags == tcpFlagACK|tcpFlagPSH)
	case protoUDP:
		if len(l4) < udpHdrLen || int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
			return p
		}
		p.kind, p.hdrLen = kindUDP, p.ipLen+udpHdrLen
		p.payload = len(l4) - udpHdrLen
		// A zero IPv4 UDP checksum ("none") must stay zero: never merged,
		// but still a packet of its flow, so later ones do not pass it.
		p.coalesce = uso && p.payload > 0 && (p.v6 || binary.BigEndian.Uint16(l4[6:]) != 0)
	default:
		return p
	}
	if !p.v6 && p.ipLen != ipv4HdrMin {
		p.coalesce = false // IPv4 options: rare, not worth comparing
	}
	return p
}

// sameFlow reports whether a and b (classified TCP or UDP, same kind) have
// the same addresses and ports.
func sameFlow(a, b []byte, ia, ib *pktInfo) bool {
	if ia.kind != ib.kind || ia.v6 != ib.v6 {
		return false
	}
	if ia.v6 {
		if !bytes.Equal(a[8:40], b[8:40]) {
			return false
		}
	} else if !bytes.Equal(a[12:20], b[12:20]) {
		return false
	}
	return bytes.Equal(a[ia.ipLen:ia.ipLen+4], b[ib.ipLen:ib.ipLen+4])
}

// sameHeaders reports whether b may follow a in one GSO frame as far as
// their fixed header fields go. The window must be equal, not just the ACK:
// resegmentation copies one TCP header to every segment, so a window update
// inside a group could not be reproduced (Linux's tcp_gro_receive also
// flushes on any change in that word).
func sameHeaders(a, b []byte, ia, ib *pktInfo) bool {
	if ia.v6 {
		// version, traffic class, flow label; hop limit
		if !bytes.Equal(a[0:4], b[0:4]) || a[7] != b[7] {
			return false
		}
	} else if a[1] != b[1] || a[6] != b[6] || a[8] != b[8] {
		return false // TOS, flags (DF), TTL
	}
	if ia.kind == kindTCP {
		if ia.hdrLen != ib.hdrLen {
			return false
		}
		ta, tb := a[ia.ipLen:ia.hdrLen], b[ib.ipLen:ib.hdrLen]
		return bytes.Equal(ta[8:13], tb[8:13]) && // ACK number, data offset, reserved bits
			bytes.Equal(ta[14:16], tb[14:16]) && // window
			bytes.Equal(ta[18:], tb[18:]) // urgent pointer, options
	}
	return true
}

// plan groups the packets bufs[i][offset:]. Each packet joins the latest
// group of its flow if it continues it, else starts a new one; groups are
// written in the order of their first packets, so each flow keeps its order
// while other flows' packets may sit between its own.
func (p *planner) plan(bufs [][]byte, offset int) {
	p.info = p.info[:0]
	p.next = p.next[:0]
	p.groups = p.groups[:0]
	for i, b := range bufs {
		pkt := b[offset:]
		p.info = append(p.info, classify(pkt, p.uso))
		p.next = append(p.next, -1)
		in := &p.info[i]
		if in.kind != kindRaw {
			if g := p.latest(bufs, offset, i); g != nil && p.canAppend(g, bufs, offset, i) {
				p.next[g.last] = i
				g.last = i
				g.n++
				g.total += in.payload
				g.closed = in.payload < g.gsoSize || in.flags&tcpFlagPSH != 0
				continue
			}
		}
		p.groups = append(p.groups, group{
			first: i, last: i, n: 1, total: len(pkt), gsoSize: in.payload,
			closed: !in.coalesce || in.flags&tcpFlagPSH != 0 || in.csum == csumBad,
		})
	}
}

// latest finds the most recent group of packet i's flow, or nil.
func (p *planner) latest(bufs [][]byte, offset, i int) *group {
	in := &p.info[i]
	pkt := bufs[i][offset:]
	for j := len(p.groups) - 1; j >= 0; j-- {
		g := &p.groups[j]
		f := &p.info[g.first]
		if f.kind != kindRaw && sameFlow(bufs[g.first][offset:], pkt, f, in) {
			return g
		}
	}
	return nil
}

// canAppend reports whether packet i continues group g.
func (p *planner) canAppend(g *group, bufs [][]byte, offset, i int) bool {
	in, f, l := &p.info[i], &p.info[g.first], &p.info[g.last]
	if g.closed || !in.coalesce || g.n >= maxGroupSegs || in.payload > g.gsoSize ||
		g.total+in.payload > maxIPLen {
		return false
	}
	if !f.v6 && in.id != f.id+uint16(g.n) {
		return false // resegmentation numbers IPv4 IDs from the first
	}
	if in.kind == kindTCP && in.seq != l.seq+uint32(l.payload) {
		return false
	}
	if !sameHeaders(bufs[g.first][offset:], bufs[i][offset:], f, in) {
		return false
	}
	// Checked last, so only packets that would otherwise merge pay for it.
	if !p.verified(bufs, offset, g.first) {
		g.closed = true // nothing may join a packet that must go out as is
		return false
	}
	return p.verified(bufs, offset, i)
}

// verified checks packet i's IPv4 header checksum and TCP/UDP checksum once
// and remembers the answer.
func (p *planner) verified(bufs [][]byte, offset, i int) bool {
	in := &p.info[i]
	if in.csum == csumUnknown {
		in.csum = csumBad
		if checksumsGood(bufs[i][offset:], in) {
			in.csum = csumGood
		}
	}
	return in.csum == csumGood
}

// checksumsGood reports whether a classified TCP/UDP packet's checksums are
// right. A zero IPv4 UDP checksum ("none") never gets here: classify marks
// such packets not coalescable. A zero IPv6 UDP checksum is wrong (RFC 8200) and fails.
func checksumsGood(pkt []byte, in *pktInfo) bool {
	proto := uint8(protoTCP)
	if in.kind == kindUDP {
		proto = protoUDP
	}
	l4 := pkt[in.ipLen:]
	var sum uint64
	if in.v6 {
		sum = pseudoSum(pkt[8:24], pkt[24:40], proto, len(l4))
	} else {
		if fold(checksum(pkt[:in.ipLen], 0)) != 0xffff {
			return false
		}
		sum = pseudoSum(pkt[12:16], pkt[16:20], proto, len(l4))
	}
	if in.kind == kindUDP && l4[udpCsumOff] == 0 && l4[udpCsumOff+1] == 0 {
		return false
	}
	return fold(checksum(l4, sum)) == 0xffff
}

// prepare rewrites the first packet of g for the frame as a whole and
// returns the virtio header to write in front of it. A lone packet is left
// alone, byte for byte, with a zero header: the kernel checks its checksums
// as it would on any NIC without offload, so a packet corrupted before it
// was sealed is dropped by the receiver's stack, and an IPv4 UDP checksum
// of 0 stays 0. A GSO train (its members' checksums all verified) gets the
// IP length of the whole, and the L4 checksum field gets the pseudo-header
// sum (folded, not inverted) as the kernel expects with NEEDS_CSUM
// (CHECKSUM_PARTIAL).
func (p *planner) prepare(g *group, bufs [][]byte, offset int) virtioHdr {
	in := &p.info[g.first]
	if in.kind == kindRaw || g.n == 1 {
		return virtioHdr{}
	}
	pkt := bufs[g.first][offset:]
	h := virtioHdr{
		flags:     virtioFlagNeedsCsum,
		hdrLen:    uint16(in.hdrLen),
		csumStart: uint16(in.ipLen),
	}
	l4Len := g.total - in.ipLen
	h.gsoSize = uint16(g.gsoSize)
	if in.v6 {
		binary.BigEndian.PutUint16(pkt[4:], uint16(l4Len))
	} else {
		binary.BigEndian.PutUint16(pkt[2:], uint16(g.total))
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^fold(checksum(pkt[:in.ipLen], 0)))
	}
	var sum uint64
	if in.v6 {
		sum = checksum(pkt[8:40], 0)
	} else {
		sum = checksum(pkt[12:20], 0)
	}
	l4 := pkt[in.ipLen:]
	if in.kind == kindTCP {
		h.csumOffset = tcpCsumOff
		sum = addSum(sum, protoTCP+uint64(l4Len))
		// Segmentation keeps PSH on the last segment only, so a PSH on
		// the last packet is carried by the header of the whole.
		l4[13] |= p.info[g.last].flags & tcpFlagPSH
		h.gsoType = gsoTCPv4
		if in.v6 {
			h.gsoType = gsoTCPv6
		}
	} else {
		h.csumOffset = udpCsumOff
		sum = addSum(sum, protoUDP+uint64(l4Len))
		h.gsoType = gsoUDPL4
		binary.BigEndian.PutUint16(l4[4:], uint16(l4Len))
	}
	binary.BigEndian.PutUint16(l4[h.csumOffset:], fold(sum))
	return h
}
