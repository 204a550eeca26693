// Package udpbind is a Linux UDP bind for the data plane (it implements
// golang.zx2c4.com/wireguard/conn.Bind): one IPv4 and one IPv6 socket on
// the same port, recvmmsg/sendmmsg batches, UDP GSO on send (UDP_SEGMENT),
// UDP GRO on receive (UDP_GRO), and sticky source addresses (replies leave
// from the local address the peer talked to).
//
// A ReceiveFunc tries recvmmsg without blocking and, when the socket is
// empty, spins a moment while packets come close together
// (internal/busypoll), then sleeps in the Go netpoller on an epoll of the
// socket and an eventfd (busypoll.Sleeper; a thread blocked in poll(2)
// would keep the runtime's sysmon awake). Close writes the eventfd to
// release blocked calls.
//
// The packet-format parts (control messages, GRO splitting, GSO grouping)
// are plain Go in files without a build tag so they are tested and fuzzed
// everywhere; the syscalls are in *_linux.go.
package udpbind

// Sizes and limits of the bind.
const (
	// BatchSize is what Bind.BatchSize reports: the most datagrams per
	// Send and per ReceiveFunc call.
	BatchSize = 128

	// recvMsgs is the number of messages per recvmmsg. Each has its own
	// 64 KiB buffer (a GRO message holds up to 64 KiB of datagrams), so
	// this is 1 MiB per socket.
	recvMsgs = 16
	// recvBufSize holds the largest UDP payload or GRO message.
	recvBufSize = 1 << 16

	// maxGSOSegments is the most datagrams one UDP_SEGMENT send may carry
	// (the kernel's UDP_MAX_SEGMENTS on older kernels).
	maxGSOSegments = 64
	// maxGSOBytes is the most payload one UDP_SEGMENT send may carry: the
	// largest IPv4 UDP payload (65535 - 20 - 8).
	maxGSOBytes = 65507

	// socketBuffer is SO_RCVBUF and SO_SNDBUF of each socket.
	socketBuffer = 7 << 20

	// maxCachedEndpoints bounds the receive side's endpoint cache per
	// socket; when full it is emptied (handed-out endpoints stay valid).
	maxCachedEndpoints = 1024

	// v6PortTries is how often Open(0) picks a fresh port when the IPv4
	// socket's port is taken for IPv6.
	v6PortTries = 8
)

// Linux socket-level constants used by the platform-independent cmsg code
// (values from the kernel's uapi headers; identical on every architecture).
const (
	solIP       = 0   // IPPROTO_IP
	solIPv6     = 41  // IPPROTO_IPV6
	solUDP      = 17  // SOL_UDP
	ipPktinfo   = 8   // IP_PKTINFO
	ipv6Pktinfo = 50  // IPV6_PKTINFO
	udpSegment  = 103 // UDP_SEGMENT
	udpGRO      = 104 // UDP_GRO

	sizeofInPktinfo  = 12 // struct in_pktinfo
	sizeofIn6Pktinfo = 20 // struct in6_pktinfo
	sizeofSegment    = 2  // UDP_SEGMENT carries a uint16
	sizeofGRO        = 4  // UDP_GRO carries an int
)
