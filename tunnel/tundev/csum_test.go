package tundev

import (
	"bytes"
	"reflect"
	"testing"
)

// Issue 12, finding 1: a packet is written byte for byte unless it is
// merged, and merged only if its own checksums are right. These cases fail
// on the old planner, which marked every TCP/UDP packet NEEDS_CSUM and
// overwrote its checksum field.
func TestBadChecksumsAreNeverFixed(t *testing.T) {
	badL4 := func(p []byte) []byte { p[len(p)-1] ^= 0x5a; return p } // payload changed after the checksum
	badIP := func(p []byte) []byte { p[10] ^= 0xff; return p }       // IPv4 header checksum wrong
	udp := func(i int, mut func(*spec)) []byte {
		s := spec{udp: true, sport: 53, dport: 99, id: uint16(i), payload: payload(1200, byte(i))}
		if mut != nil {
			mut(&s)
		}
		return build(s)
	}
	udpZero := func(i int) []byte { return udp(i, func(s *spec) { s.udpZero = true }) }
	udp6 := func(i int) []byte { return udp(i, func(s *spec) { s.v6 = true }) }
	udp6Zero := func(i int) []byte {
		p := udp6(i)
		p[ipv6HdrLen+6], p[ipv6HdrLen+7] = 0, 0
		return p
	}
	v6 := func(i int) []byte { return tcpSeg(i, func(s *spec) { s.v6 = true }) }
	runs := func(a ...[]int) [][]int { return a }
	cases := []struct {
		name string
		pkts [][]byte
		uso  bool
		want [][]int
	}{
		{"bad TCP alone", [][]byte{badL4(tcpSeg(0, nil))}, false, runs([]int{0})},
		{"bad IPv4 header alone", [][]byte{badIP(tcpSeg(0, nil))}, false, runs([]int{0})},
		{"bad UDP alone", [][]byte{badL4(udp(0, nil))}, true, runs([]int{0})},
		{"zero UDP alone", [][]byte{udpZero(0)}, true, runs([]int{0})},
		{"bad TCP in a burst", [][]byte{tcpSeg(0, nil), tcpSeg(1, nil), badL4(tcpSeg(2, nil)), tcpSeg(3, nil), tcpSeg(4, nil)}, false, runs([]int{0, 1}, []int{2}, []int{3, 4})},
		{"bad TCP first", [][]byte{badL4(tcpSeg(0, nil)), tcpSeg(1, nil), tcpSeg(2, nil)}, false, runs([]int{0}, []int{1, 2})},
		{"bad TCP last", [][]byte{tcpSeg(0, nil), tcpSeg(1, nil), badL4(tcpSeg(2, nil))}, false, runs([]int{0, 1}, []int{2})},
		{"bad IPv4 header in a burst", [][]byte{tcpSeg(0, nil), badIP(tcpSeg(1, nil)), tcpSeg(2, nil)}, false, runs([]int{0}, []int{1}, []int{2})},
		{"bad TCPv6 in a burst", [][]byte{v6(0), badL4(v6(1)), v6(2), v6(3)}, false, runs([]int{0}, []int{1}, []int{2, 3})},
		{"bad UDP in a USO burst", [][]byte{udp(0, nil), udp(1, nil), badL4(udp(2, nil)), udp(3, nil)}, true, runs([]int{0, 1}, []int{2}, []int{3})},
		{"zero UDP in a USO burst", [][]byte{udp(0, nil), udp(1, nil), udpZero(2), udp(3, nil), udp(4, nil)}, true, runs([]int{0, 1}, []int{2}, []int{3, 4})},
		{"zero UDPv6 in a USO burst", [][]byte{udp6(0), udp6Zero(1), udp6(2), udp6(3)}, true, runs([]int{0}, []int{1}, []int{2, 3})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := planner{uso: c.uso}
			frames := planBatch(&p, c.pkts)
			var got [][]int
			for _, f := range frames {
				got = append(got, f.members)
				if len(f.members) == 1 {
					if f.h != (virtioHdr{}) {
						t.Errorf("lone packet %d written with header %+v, want none", f.members[0], f.h)
					}
					if !bytes.Equal(f.frame, c.pkts[f.members[0]]) {
						t.Errorf("lone packet %d was changed:\n got %x\nwant %x", f.members[0], f.frame[:48], c.pkts[f.members[0]][:48])
					}
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("groups %v, want %v", got, c.want)
			}
			if err := checkRoundTrip(c.pkts, frames); err != nil {
				t.Fatal(err)
			}
		})
	}
}
