package tundev

import (
	"encoding/binary"
	"fmt"
)

// gsoFrame is a validated GSO super-packet read from the TUN device: one set
// of IP and L4 headers followed by the payload of nseg segments of gsoSize
// bytes (the last may be shorter). The fields copied out of pkt's headers let
// segment 0 be rewritten in place after the others were built.
type gsoFrame struct {
	pkt      []byte
	ipLen    int // IP header length, the L4 header's offset
	hdrLen   int // IP + L4 header length
	gsoSize  int
	nseg     int
	v6, udp  bool
	seq      uint32 // TCP sequence number of segment 0
	id       uint16 // IPv4 ID of segment 0
	tcpFlags uint8
	addrSum  uint64 // pseudo-header accumulator: addresses and protocol
}

// parseGSO validates a frame whose virtio header asks for segmentation and
// says what is wrong when it is not well formed. It never trusts h.hdrLen
// for the header length: the kernel puts the length of the skb's linear part
// there, so the headers are measured from the packet itself.
func parseGSO(h virtioHdr, pkt []byte) (gsoFrame, error) {
	var f gsoFrame
	f.pkt = pkt
	var proto uint8
	switch h.gsoType &^ gsoECN {
	case gsoTCPv4, gsoTCPv6:
		proto = protoTCP
	case gsoUDPL4:
		if h.gsoType&gsoECN != 0 {
			return f, fmt.Errorf("tundev: GSO frame: ECN bit on UDP_L4")
		}
		proto, f.udp = protoUDP, true
	default:
		return f, fmt.Errorf("tundev: GSO frame: unknown gso_type %#x", h.gsoType)
	}
	if h.gsoSize == 0 {
		return f, fmt.Errorf("tundev: GSO frame: gso_size 0")
	}
	if int(h.hdrLen) > len(pkt) {
		return f, fmt.Errorf("tundev: GSO frame: hdr_len %d beyond the %d-byte frame", h.hdrLen, len(pkt))
	}
	if len(pkt) == 0 {
		return f, fmt.Errorf("tundev: GSO frame: empty")
	}
	switch pkt[0] >> 4 {
	case 4:
		if h.gsoType&^gsoECN == gsoTCPv6 {
			return f, fmt.Errorf("tundev: GSO frame: IPv4 packet with gso_type TCPV6")
		}
		if len(pkt) < ipv4HdrMin {
			return f, fmt.Errorf("tundev: GSO frame: %d bytes, short of an IPv4 header", len(pkt))
		}
		f.ipLen = int(pkt[0]&0xf) * 4
		if f.ipLen < ipv4HdrMin || f.ipLen > len(pkt) {
			return f, fmt.Errorf("tundev: GSO frame: bad IPv4 header length %d", f.ipLen)
		}
		if pkt[9] != proto {
			return f, fmt.Errorf("tundev: GSO frame: IPv4 protocol %d does not match gso_type %#x", pkt[9], h.gsoType)
		}
		if pkt[6]&ipv4FlagMF != 0 || binary.BigEndian.Uint16(pkt[6:])&0x1fff != 0 {
			return f, fmt.Errorf("tundev: GSO frame: IPv4 fragment")
		}
		f.id = binary.BigEndian.Uint16(pkt[4:])
		f.addrSum = pseudoSum(pkt[12:16], pkt[16:20], proto, 0)
	case 6:
		if h.gsoType&^gsoECN == gsoTCPv4 {
			return f, fmt.Errorf("tundev: GSO frame: IPv6 packet with gso_type TCPV4")
		}
		if len(pkt) < ipv6HdrLen {
			return f, fmt.Errorf("tundev: GSO frame: %d bytes, short of an IPv6 header", len(pkt))
		}
		if pkt[6] != proto {
			return f, fmt.Errorf("tundev: GSO frame: IPv6 next header %d does not match gso_type %#x", pkt[6], h.gsoType)
		}
		f.ipLen, f.v6 = ipv6HdrLen, true
		f.addrSum = pseudoSum(pkt[8:24], pkt[24:40], proto, 0)
	default:
		return f, fmt.Errorf("tundev: GSO frame: IP version %d", pkt[0]>>4)
	}
	if int(h.csumStart) != f.ipLen {
		return f, fmt.Errorf("tundev: GSO frame: csum_start %d is not the IP header length %d", h.csumStart, f.ipLen)
	}
	if f.udp {
		if h.csumOffset != udpCsumOff {
			return f, fmt.Errorf("tundev: GSO frame: csum_offset %d for UDP", h.csumOffset)
		}
		f.hdrLen = f.ipLen + udpHdrLen
		if f.hdrLen > len(pkt) {
			return f, fmt.Errorf("tundev: GSO frame: %d bytes, short of a UDP header", len(pkt))
		}
	} else {
		if h.csumOffset != tcpCsumOff {
			return f, fmt.Errorf("tundev: GSO frame: csum_offset %d for TCP", h.csumOffset)
		}
		if f.ipLen+tcpHdrMin > len(pkt) {
			return f, fmt.Errorf("tundev: GSO frame: %d bytes, short of a TCP header", len(pkt))
		}
		doff := int(pkt[f.ipLen+12]>>4) * 4
		f.hdrLen = f.ipLen + doff
		if doff < tcpHdrMin || f.hdrLen > len(pkt) {
			return f, fmt.Errorf("tundev: GSO frame: bad TCP data offset %d", doff)
		}
		f.seq = binary.BigEndian.Uint32(pkt[f.ipLen+4:])
		f.tcpFlags = pkt[f.ipLen+13]
	}
	payload := len(pkt) - f.hdrLen
	if payload == 0 {
		return f, fmt.Errorf("tundev: GSO frame: no payload")
	}
	f.gsoSize = int(h.gsoSize)
	if f.hdrLen+f.gsoSize > maxIPLen {
		return f, fmt.Errorf("tundev: GSO frame: gso_size %d makes segments over %d bytes", f.gsoSize, maxIPLen)
	}
	f.nseg = (payload + f.gsoSize - 1) / f.gsoSize
	return f, nil
}

// segLen is the length of segment i.
func (f *gsoFrame) segLen(i int) int {
	return f.hdrLen + min(f.gsoSize, len(f.pkt)-f.hdrLen-i*f.gsoSize)
}

// segment builds segment i of f at the start of dst, which must hold
// segLen(i) bytes, and returns its length. dst may be f.pkt itself for
// segment 0 only, and then segment 0 must be built after all others: it
// rewrites the headers they copy.
func (f *gsoFrame) segment(dst []byte, i int) int {
	start := f.hdrLen + i*f.gsoSize
	end := min(start+f.gsoSize, len(f.pkt))
	n := f.hdrLen + end - start
	dst = dst[:n]
	// The payload is summed while it is copied (one pass over it); the
	// headers, rewritten below, are summed after.
	var payloadSum uint64
	if i != 0 || &dst[0] != &f.pkt[0] {
		copy(dst, f.pkt[:f.hdrLen])
		payloadSum = copyChecksum(dst[f.hdrLen:], f.pkt[start:end], 0)
	} else {
		payloadSum = checksum(dst[f.hdrLen:], 0)
	}
	if f.v6 {
		binary.BigEndian.PutUint16(dst[4:], uint16(n-ipv6HdrLen))
	} else {
		binary.BigEndian.PutUint16(dst[2:], uint16(n))
		binary.BigEndian.PutUint16(dst[4:], f.id+uint16(i))
		dst[10], dst[11] = 0, 0
		binary.BigEndian.PutUint16(dst[10:], ^fold(checksum(dst[:f.ipLen], 0)))
	}
	l4 := dst[f.ipLen:]
	var csumAt int
	if f.udp {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		csumAt = udpCsumOff
	} else {
		binary.BigEndian.PutUint32(l4[4:], f.seq+uint32(i*f.gsoSize))
		flags := f.tcpFlags
		if i != f.nseg-1 {
			flags &^= tcpFlagFIN | tcpFlagPSH
		}
		if i != 0 {
			flags &^= tcpFlagCWR
		}
		l4[13] = flags
		csumAt = tcpCsumOff
	}
	l4[csumAt], l4[csumAt+1] = 0, 0
	sum := ^fold(checksum(l4[:f.hdrLen-f.ipLen], addSum(addSum(f.addrSum, uint64(len(l4))), payloadSum)))
	if sum == 0 {
		sum = 0xffff // a computed 0 is sent as all ones (RFC 768)
	}
	binary.BigEndian.PutUint16(l4[csumAt:], sum)
	return n
}

// splitInto builds segments from, from+1, ... of f into outs[k][offset:],
// recording their lengths in sizes[k], until outs or the segments run out,
// and returns how many it built. outs[0][offset:] may alias f.pkt only when
// from is 0: segments are built from the back so segment 0 comes last.
func (f *gsoFrame) splitInto(from int, outs [][]byte, sizes []int, offset int) (int, error) {
	k := min(f.nseg-from, len(outs), len(sizes))
	for j := range k {
		if len(outs[j])-offset < f.segLen(from+j) {
			return 0, fmt.Errorf("tundev: splitting a GSO frame: %d-byte buffer too small for a %d-byte segment", len(outs[j])-offset, f.segLen(from+j))
		}
	}
	for j := k - 1; j >= 0; j-- {
		sizes[j] = f.segment(outs[j][offset:], from+j)
	}
	return k, nil
}

// finishChecksum completes the checksum of a frame the kernel marked
// NEEDS_CSUM without GSO: the field at csumStart+csumOffset holds the
// pseudo-header sum, so summing from csumStart to the end over it gives the
// full checksum.
func finishChecksum(h virtioHdr, pkt []byte) error {
	start, at := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
	if h.csumOffset&1 != 0 || at+2 > len(pkt) {
		return fmt.Errorf("tundev: frame: checksum at %d+%d outside the %d-byte packet", h.csumStart, h.csumOffset, len(pkt))
	}
	sum := ^fold(checksum(pkt[start:], 0))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], sum)
	return nil
}
