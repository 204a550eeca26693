package udpbind

// splitGRO copies the datagrams of one received message into bufs, starting
// at byte off of msg. gso is the message's UDP_GRO segment size: every
// datagram but the last is gso bytes (0: the message is one datagram).
// A datagram longer than the buffer it would go to is dropped and counted,
// and does not use up that buffer. It returns the buffers filled (their
// lengths in sizes), the offset of the first datagram not taken (len(msg)
// when the message is used up) and the number dropped. Empty messages hold
// no datagram here (drain hands an empty datagram out itself, size 0).
func splitGRO(msg []byte, gso, off int, bufs [][]byte, sizes []int) (filled, next, dropped int) {
	if off < 0 {
		off = len(msg)
	}
	for off < len(msg) && filled < len(bufs) {
		seg := len(msg) - off
		if gso > 0 && gso < seg {
			seg = gso
		}
		if seg > len(bufs[filled]) {
			dropped++
		} else {
			copy(bufs[filled], msg[off:off+seg])
			sizes[filled] = seg
			filled++
		}
		off += seg
	}
	return filled, off, dropped
}

// datagramsIn is how many datagrams a message of n bytes with segment size
// gso holds.
func datagramsIn(n, gso int) int {
	if n <= 0 {
		return 0
	}
	if gso <= 0 || gso >= n {
		return 1
	}
	return (n + gso - 1) / gso
}
