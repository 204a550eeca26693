package tundev

import (
	"bytes"
	"fmt"
)

// CheckWritePlan plans pkts the way Write would (with or without USO),
// builds the frames Write would hand the kernel, and reports how they fail
// to give back the packets: a lone packet must go out byte for byte with no
// virtio header; a packet merged into a GSO frame must have had correct
// checksums, and re-splitting the frame (this package's own splitter, the
// kernel's model) must give it back with only its checksum fields
// rewritten. It copies pkts and allocates: for fuzz targets outside this
// package (the tunnel's receive path feeds Write what a peer sent), never
// for the packet path.
func CheckWritePlan(pkts [][]byte, uso bool) error {
	const offset = virtioHdrLen
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = append(make([]byte, offset), p...)
	}
	pl := planner{uso: uso}
	pl.plan(bufs, offset)
	seen := make([]bool, len(pkts))
	for gi := range pl.groups {
		g := &pl.groups[gi]
		h := pl.prepare(g, bufs, offset)
		if g.n == 1 {
			seen[g.first] = true
			if h != (virtioHdr{}) {
				return fmt.Errorf("packet %d written alone with virtio header %+v", g.first, h)
			}
			if !bytes.Equal(bufs[g.first][offset:], pkts[g.first]) {
				return fmt.Errorf("packet %d written alone but changed", g.first)
			}
			continue
		}
		frame := append([]byte{}, bufs[g.first][offset:]...)
		var members []int
		for j := g.first; j >= 0; j = pl.next[j] {
			members = append(members, j)
			if j != g.first {
				frame = append(frame, bufs[j][offset+pl.info[j].hdrLen:]...)
			}
		}
		f, err := parseGSO(h, frame)
		if err != nil {
			return fmt.Errorf("GSO frame of packets %v: %v", members, err)
		}
		if f.nseg != len(members) {
			return fmt.Errorf("GSO frame of packets %v splits into %d", members, f.nseg)
		}
		for k, m := range members {
			seen[m] = true
			in := classify(pkts[m], uso)
			if !checksumsGood(pkts[m], &in) {
				return fmt.Errorf("packet %d merged with a bad checksum", m)
			}
			seg := make([]byte, f.segLen(k))
			f.segment(seg, k)
			if !sameButChecksums(seg, pkts[m], &in) {
				return fmt.Errorf("packet %d does not come back from its GSO frame", m)
			}
		}
	}
	for i, s := range seen {
		if !s {
			return fmt.Errorf("packet %d not written", i)
		}
	}
	return nil
}

// sameButChecksums compares two packets of the layout in, ignoring the
// IPv4 header checksum and the L4 checksum.
func sameButChecksums(a, b []byte, in *pktInfo) bool {
	if len(a) != len(b) {
		return false
	}
	at := in.ipLen + tcpCsumOff
	if in.kind == kindUDP {
		at = in.ipLen + udpCsumOff
	}
	for i := range a {
		if (!in.v6 && (i == 10 || i == 11)) || i == at || i == at+1 {
			continue
		}
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
