package tundev

import "encoding/binary"

// virtioHdr is struct virtio_net_hdr. The kernel reads and writes its 16-bit
// fields in host byte order for TUN devices unless TUNSETVNETLE/BE is set
// (tun_is_little_endian → virtio_legacy_is_little_endian), which we never
// do, so we use binary.NativeEndian (little-endian on amd64 and arm64).
type virtioHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16 // kernel → us: the length of the linear part, not trusted
	gsoSize    uint16 // payload bytes per segment
	csumStart  uint16 // offset of the L4 header
	csumOffset uint16 // offset of the checksum field from csumStart
}

// decodeVirtioHdr reads a header from b, which holds at least virtioHdrLen bytes.
func decodeVirtioHdr(b []byte) virtioHdr {
	_ = b[virtioHdrLen-1]
	return virtioHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.NativeEndian.Uint16(b[2:]),
		gsoSize:    binary.NativeEndian.Uint16(b[4:]),
		csumStart:  binary.NativeEndian.Uint16(b[6:]),
		csumOffset: binary.NativeEndian.Uint16(b[8:]),
	}
}

// encode writes h into b, which holds at least virtioHdrLen bytes.
func (h virtioHdr) encode(b []byte) {
	_ = b[virtioHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}
