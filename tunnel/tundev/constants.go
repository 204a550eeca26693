package tundev

// The virtio_net_hdr the kernel puts in front of every frame on a TUN
// device opened with IFF_VNET_HDR (include/uapi/linux/virtio_net.h). We never
// call TUNSETVNETHDRSZ, so it is the legacy 10-byte header.
const virtioHdrLen = 10

// virtio_net_hdr.flags.
const (
	virtioFlagNeedsCsum = 0x1 // checksum from csumStart to the end is partial
)

// virtio_net_hdr.gso_type.
const (
	gsoNone  = 0
	gsoTCPv4 = 1
	gsoTCPv6 = 4
	gsoUDPL4 = 5
	gsoECN   = 0x80 // bit or-ed into gsoTCPv4/gsoTCPv6
)

// TUNSETOFFLOAD bits (include/uapi/linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFUSO4 = 0x20
	tunFUSO6 = 0x40
)

// IP and transport constants.
const (
	ipv4HdrMin = 20
	ipv6HdrLen = 40
	tcpHdrMin  = 20
	udpHdrLen  = 8

	protoTCP = 6
	protoUDP = 17

	tcpCsumOff = 16 // checksum offset inside the TCP header
	udpCsumOff = 6  // checksum offset inside the UDP header

	tcpFlagFIN = 0x01
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagPSH = 0x08
	tcpFlagACK = 0x10
	tcpFlagURG = 0x20
	tcpFlagECE = 0x40
	tcpFlagCWR = 0x80

	ipv4FlagDF = 0x40 // in byte 6 of the IPv4 header
	ipv4FlagMF = 0x20

	maxIPLen = 65535 // largest IP packet (IPv4 total length, IPv6 40+payload)
)

// Batch and coalescing limits.
const (
	batchSize    = 128 // what BatchSize reports: packets per Read/Write call
	maxGroupSegs = 64  // most packets written as one GSO frame
	bufSize      = 65536 + virtioHdrLen
)
