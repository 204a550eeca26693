package tunnel

import (
	"encoding/binary"
	"net/netip"

	"stunnel/handshake"
)

// Data-packet layout (docs/PROTOCOL.md): a 16-byte header (type, version, two
// zero bytes, receiver index LE32, counter LE64) followed by the AEAD-sealed
// IP packet. Buffers keep headerLen bytes free in front of the IP packet so
// sealing and opening happen in place.
const (
	headerLen = handshake.MessageDataHeaderLen
	tagLen    = handshake.TagSize
	// bufferSize fits the largest UDP datagram and the largest TUN super-packet,
	// so UDP GSO/GRO and TUN GRO can coalesce into a buffer in place.
	bufferSize = 65536
)

// writeDataHeader fills the header of a data packet in front of its payload.
func writeDataHeader(b []byte, receiver uint32, counter uint64) {
	b[0] = handshake.MessageTypeData
	b[1] = handshake.ProtocolVersion
	b[2], b[3] = 0, 0
	binary.LittleEndian.PutUint32(b[4:8], receiver)
	binary.LittleEndian.PutUint64(b[8:16], counter)
}

// dataReceiver returns the receiver index of a data packet, or ok=false if
// the bytes are not a well-formed data header with room for a tag.
func dataReceiver(b []byte) (receiver uint32, ok bool) {
	if len(b) < headerLen+tagLen || b[0] != handshake.MessageTypeData ||
		b[1] != handshake.ProtocolVersion || b[2] != 0 || b[3] != 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[4:8]), true
}

func dataCounter(b []byte) uint64 { return binary.LittleEndian.Uint64(b[8:16]) }

// putNonce writes the 96-bit AEAD nonce for a counter: four zero bytes, then
// the counter little-endian.
func putNonce(nonce *[12]byte, counter uint64) {
	nonce[0], nonce[1], nonce[2], nonce[3] = 0, 0, 0, 0
	binary.LittleEndian.PutUint64(nonce[4:], counter)
}

// ipDestination returns an IP packet's destination address.
func ipDestination(p []byte) (netip.Addr, bool) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(p[16:20])), true
	case len(p) >= 40 && p[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(p[24:40])), true
	}
	return netip.Addr{}, false
}

// ipSource returns an IP packet's source address and the packet length its
// header declares, which must fit in p.
func ipSource(p []byte) (src netip.Addr, length int, ok bool) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		length = int(binary.BigEndian.Uint16(p[2:4]))
		if length < 20 || length > len(p) {
			return netip.Addr{}, 0, false
		}
		return netip.AddrFrom4([4]byte(p[12:16])), length, true
	case len(p) >= 40 && p[0]>>4 == 6:
		length = 40 + int(binary.BigEndian.Uint16(p[4:6]))
		if length > len(p) {
			return netip.Addr{}, 0, false
		}
		return netip.AddrFrom16([16]byte(p[8:24])), length, true
	}
	return netip.Addr{}, 0, false
}
