package tundev

import (
	"encoding/binary"
	"math/bits"
)

// checksum adds b to the ones-complement accumulator sum and returns the new
// accumulator; fold turns an accumulator into the 16-bit Internet checksum
// sum (RFC 1071), not inverted.
//
// Why it is fast: it loads 8 bytes at a time big-endian and adds them with
// the carry chained through bits.Add64 (an ADC chain on amd64), adding the
// carries back at the end ("deferred carries", RFC 1071 §2(B)). That is
// valid because 2^64 ≡ 1 (mod 2^16-1): a carry out of bit 63 is worth one,
// exactly as an end-around carry out of bit 15. Every 8-byte load starts at
// an even offset, so byte order within 16-bit words is kept.
func checksum(b []byte, sum uint64) uint64 {
	if haveAVX2 && len(b) >= minAVX2 {
		for len(b) >= 32 {
			n := min(len(b)&^31, maxAVX2Chunk)
			sum = addSum(sum, swappedSum(sumWordsAVX2(b[:n])))
			b = b[n:]
		}
	}
	var c uint64
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		sum, c = bits.Add64(sum, uint64(b[0])<<8, c)
	}
	sum, c = bits.Add64(sum, c, 0)
	return sum + c // cannot carry again: sum+c wrapped only if sum was near 2^64 and c==1, leaving it small
}

// minAVX2 is the shortest input the AVX2 sum is used for: below it, its
// set-up and the final reduction cost more than the ADC chain saves.
const minAVX2 = 128

// swappedSum turns a sum of little-endian 16-bit words into an accumulator
// of the big-endian ones: the ones-complement sum commutes with swapping the
// bytes of every word (RFC 1071 §2(B)), so the folded sum is swapped back.
func swappedSum(le uint64) uint64 {
	return uint64(bits.ReverseBytes16(fold(le)))
}

// copyChecksum copies src to dst (which must be at least as long) and
// returns checksum(src, sum), in one pass over the bytes where it can.
func copyChecksum(dst, src []byte, sum uint64) uint64 {
	dst = dst[:len(src)] // the assembly trusts the lengths: check them here
	if haveAVX2 && len(src) >= minAVX2 {
		for len(src) >= 32 {
			n := min(len(src)&^31, maxAVX2Chunk)
			sum = addSum(sum, swappedSum(copySumWordsAVX2(dst[:n], src[:n])))
			dst, src = dst[n:], src[n:]
		}
	}
	copy(dst, src)
	return checksum(src, sum)
}

// fold reduces an accumulator to 16 bits with end-around carries.
func fold(sum uint64) uint16 {
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	return uint16(sum)
}

// pseudoSum is the accumulator of the TCP/UDP pseudo-header: both addresses,
// the protocol and the L4 length. src and dst are 4 or 16 bytes.
func pseudoSum(src, dst []byte, proto uint8, l4Len int) uint64 {
	sum := checksum(src, 0)
	sum = checksum(dst, sum)
	return addSum(sum, uint64(proto)+uint64(l4Len))
}

// addSum adds x to an accumulator with an end-around carry.
func addSum(sum, x uint64) uint64 {
	s, c := bits.Add64(sum, x, 0)
	return s + c
}
