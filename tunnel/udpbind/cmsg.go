package udpbind

import (
	"encoding/binary"
	"net/netip"
)

// Control messages (struct cmsghdr) are laid out as the kernel does on the
// running architecture: a size_t length, an int level, an int type, then
// the data, each message padded to the size of a long.
const (
	wordSize  = 4 << (^uintptr(0) >> 63) // sizeof(size_t) and CMSG_ALIGN unit
	cmsgHdrSz = (wordSize + 8 + wordSize - 1) &^ (wordSize - 1)
)

func cmsgAlign(n int) int { return (n + wordSize - 1) &^ (wordSize - 1) }

// cmsgSpace is CMSG_SPACE: the bytes one message with n data bytes takes.
func cmsgSpace(n int) int { return cmsgHdrSz + cmsgAlign(n) }

// sendCmsgSpace fits one UDP_SEGMENT and one IPv4 or IPv6 packet info.
const sendCmsgSpace = cmsgHdrSz + (sizeofSegment+wordSize-1)&^(wordSize-1) +
	cmsgHdrSz + (sizeofIn6Pktinfo+wordSize-1)&^(wordSize-1)

// recvCmsgSpace fits one UDP_GRO and one IPv4 or IPv6 packet info, with room
// for a control message we did not ask for.
const recvCmsgSpace = cmsgHdrSz + (sizeofGRO+wordSize-1)&^(wordSize-1) +
	cmsgHdrSz + (sizeofIn6Pktinfo+wordSize-1)&^(wordSize-1) + 64

// putCmsgHdr writes a header for n data bytes at the start of b and
// returns the data part; b must hold cmsgSpace(n) bytes.
func putCmsgHdr(b []byte, level, typ int32, n int) []byte {
	clear(b[:cmsgSpace(n)])
	if wordSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(cmsgHdrSz+n))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(cmsgHdrSz+n))
	}
	binary.NativeEndian.PutUint32(b[wordSize:], uint32(level))
	binary.NativeEndian.PutUint32(b[wordSize+4:], uint32(typ))
	return b[cmsgHdrSz : cmsgHdrSz+n]
}

// putSegment writes a UDP_SEGMENT message (the GSO segment size) at b and
// returns the bytes used.
func putSegment(b []byte, size uint16) int {
	d := putCmsgHdr(b, solUDP, udpSegment, sizeofSegment)
	binary.NativeEndian.PutUint16(d, size)
	return cmsgSpace(sizeofSegment)
}

// putPktinfo writes the packet info that makes the kernel send from src
// (IP_PKTINFO for IPv4, IPV6_PKTINFO for IPv6) at b and returns the bytes
// used, or 0 when src is not a valid address. For IPv4 the interface is
// left to routing (ifindex 0: only the source address is pinned, so a
// route change does not strand the peer); for IPv6 the interface is given
// only for a link-local source, which is meaningless without it.
func putPktinfo(b []byte, src netip.Addr, ifindex int32) int {
	switch {
	case src.Is4():
		// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
		d := putCmsgHdr(b, solIP, ipPktinfo, sizeofInPktinfo)
		a := src.As4()
		copy(d[4:8], a[:])
		return cmsgSpace(sizeofInPktinfo)
	case src.Is6():
		// struct in6_pktinfo { in6_addr addr; unsigned int ifindex; }
		d := putCmsgHdr(b, solIPv6, ipv6Pktinfo, sizeofIn6Pktinfo)
		a := src.As16()
		copy(d[:16], a[:])
		if src.IsLinkLocalUnicast() {
			binary.NativeEndian.PutUint32(d[16:], uint32(ifindex))
		}
		return cmsgSpace(sizeofIn6Pktinfo)
	}
	return 0
}

// recvInfo is what the control messages of one received message say.
type recvInfo struct {
	gsoSize int        // UDP_GRO: size of each coalesced datagram; 0 when not coalesced
	dst     netip.Addr // local address the datagram came to (IP_PKTINFO, IPV6_PKTINFO)
	ifindex int32      // interface it came in on
}

// parseCmsg reads the control messages of one received message. Unknown
// messages are skipped; a malformed one ends the parse (what came before it
// stands). It never panics and never allocates.
func parseCmsg(b []byte) recvInfo {
	var r recvInfo
	for len(b) >= cmsgHdrSz {
		var n uint64
		if wordSize == 8 {
			n = binary.NativeEndian.Uint64(b)
		} else {
			n = uint64(binary.NativeEndian.Uint32(b))
		}
		if n < cmsgHdrSz || n > uint64(len(b)) {
			break
		}
		level := int32(binary.NativeEndian.Uint32(b[wordSize:]))
		typ := int32(binary.NativeEndian.Uint32(b[wordSize+4:]))
		d := b[cmsgHdrSz:n]
		switch {
		case level == solUDP && typ == udpGRO && len(d) >= sizeofGRO:
			if s := int32(binary.NativeEndian.Uint32(d)); s > 0 {
				r.gsoSize = int(s)
			}
		case level == solIP && typ == ipPktinfo && len(d) >= sizeofInPktinfo:
			// ipi_spec_dst: the local address routing picked for the
			// packet, i.e. the one a reply should come from.
			r.ifindex = int32(binary.NativeEndian.Uint32(d))
			r.dst = netip.AddrFrom4([4]byte(d[4:8]))
		case level == solIPv6 && typ == ipv6Pktinfo && len(d) >= sizeofIn6Pktinfo:
			r.dst = netip.AddrFrom16([16]byte(d[:16]))
			r.ifindex = int32(binary.NativeEndian.Uint32(d[16:]))
		}
		next := cmsgAlign(int(n))
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return r
}
