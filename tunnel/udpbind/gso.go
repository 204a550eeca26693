package udpbind

// gsoGroupEnd returns the end (exclusive) of the GSO group that starts at
// bufs[i]: the datagrams after it of the same length, then at most one
// shorter one, no more than maxGSOSegments datagrams and maxGSOBytes bytes
// in all — what one UDP_SEGMENT send turns back into separate datagrams.
// An empty or oversized first datagram is a group of its own.
func gsoGroupEnd(bufs [][]byte, i int) int {
	first := len(bufs[i])
	if first == 0 || first > maxGSOBytes {
		return i + 1
	}
	total := first
	j := i + 1
	for j < len(bufs) && j-i < maxGSOSegments {
		n := len(bufs[j])
		if n == 0 || n > first || total+n > maxGSOBytes {
			break
		}
		total += n
		j++
		if n < first {
			break
		}
	}
	return j
}
