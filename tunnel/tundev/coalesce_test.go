package tundev

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// planned is one frame Write would hand the kernel.
type planned struct {
	h       virtioHdr
	frame   []byte // packet bytes after the virtio header, as writev gathers them
	members []int  // indices of the input packets in it
}

// planBatch runs the planner over copies of pkts laid out as Write gets
// them and returns the frames Write would write, in order.
func planBatch(p *planner, pkts [][]byte) []planned {
	bufs := make([][]byte, len(pkts))
	for i, pkt := range pkts {
		bufs[i] = append(make([]byte, testOffset), pkt...)
	}
	p.plan(bufs, testOffset)
	var out []planned
	for gi := range p.groups {
		g := &p.groups[gi]
		h := p.prepare(g, bufs, testOffset)
		pl := planned{h: h, frame: append([]byte{}, bufs[g.first][testOffset:]...)}
		for j := g.first; j >= 0; j = p.next[j] {
			pl.members = append(pl.members, j)
			if j != g.first {
				pl.frame = append(pl.frame, bufs[j][testOffset+p.info[j].hdrLen:]...)
			}
		}
		out = append(out, pl)
	}
	return out
}

// checkRoundTrip says how the planned frames fail to give back exactly the
// input packets in per-flow order: a packet written alone byte for byte
// with a zero virtio header, a packet in a GSO frame only if its own
// checksums were right (the frame's are recomputed by the kernel).
func checkRoundTrip(pkts [][]byte, frames []planned) error {
	seen := make([]bool, len(pkts))
	var order []int
	for fi, f := range frames {
		var got [][]byte
		switch {
		case f.h.gsoType != gsoNone:
			if f.h.flags != virtioFlagNeedsCsum {
				return fmt.Errorf("frame %d: GSO without NEEDS_CSUM", fi)
			}
			got = refSegment(f.h, f.frame)
			// Our own splitter must agree with the reference.
			g, err := parseGSO(f.h, append([]byte{}, f.frame...))
			if err != nil {
				return fmt.Errorf("frame %d: our split rejects it: %v", fi, err)
			}
			for i := range g.nseg {
				seg := make([]byte, g.segLen(i))
				g.segment(seg, i)
				if !bytes.Equal(seg, got[i]) {
					return fmt.Errorf("frame %d segment %d: our split differs from the reference", fi, i)
				}
			}
		default:
			if f.h != (virtioHdr{}) {
				return fmt.Errorf("frame %d: header %+v", fi, f.h)
			}
			got = [][]byte{f.frame}
		}
		if len(got) != len(f.members) {
			return fmt.Errorf("frame %d: %d packets come back, %d went in", fi, len(got), len(f.members))
		}
		for k, m := range f.members {
			want := append([]byte{}, pkts[m]...)
			if f.h.gsoType != gsoNone {
				if err := refVerify(want); err != nil {
					return fmt.Errorf("frame %d: packet %d merged with a bad checksum (%v): the kernel would deliver it fixed", fi, m, err)
				}
				refFixChecksums(want) // same packet; only 0x0000 vs 0xffff may differ
			}
			if !bytes.Equal(got[k], want) {
				return fmt.Errorf("frame %d: packet %d does not come back:\n got %x\nwant %x", fi, m, got[k][:min(64, len(got[k]))], want[:min(64, len(want))])
			}
			if seen[m] {
				return fmt.Errorf("packet %d written twice", m)
			}
			seen[m] = true
			order = append(order, m)
		}
	}
	for i, s := range seen {
		if !s {
			return fmt.Errorf("packet %d not written", i)
		}
	}
	// Packets of one flow keep their order.
	for a := range order {
		for b := a + 1; b < len(order); b++ {
			i, j := order[a], order[b]
			ii, ij := classify(pkts[i], true), classify(pkts[j], true)
			if i > j && ii.kind != kindRaw && sameFlow(pkts[i], pkts[j], &ii, &ij) {
				return fmt.Errorf("packets %d and %d of one flow reordered", j, i)
			}
		}
	}
	return nil
}

// flow is a run of full TCP segments: seg(i) is the i-th.
func tcpSeg(i int, mut func(*spec)) []byte {
	s := spec{sport: 1000, dport: 2000, seq: 5000 + uint32(i*1000), ack: 99, win: 300, id: uint16(7 + i), payload: payload(1000, byte(i))}
	if mut != nil {
		mut(&s)
	}
	return build(s)
}

func TestCoalesce(t *testing.T) {
	seq := func(n int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, tcpSeg(i, nil))
		}
		return out
	}
	with := func(i int, mut func(*spec)) []byte { return tcpSeg(i, mut) }
	other := func(i int) []byte { return tcpSeg(i, func(s *spec) { s.sport = 1001; s.id = uint16(100 + i) }) }
	udp := func(i int, mut func(*spec)) []byte {
		s := spec{udp: true, sport: 53, dport: 99, id: uint16(i), payload: payload(1200, byte(i))}
		if mut != nil {
			mut(&s)
		}
		return build(s)
	}
	v6 := func(i int) []byte {
		return tcpSeg(i, func(s *spec) { s.v6 = true })
	}
	big := func(n, size int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, tcpSeg(0, func(s *spec) {
				s.seq, s.id, s.payload = uint32(i*size), uint16(i), payload(size, byte(i))
			}))
		}
		return out
	}
	icmp := build(spec{payload: payload(50, 1)})
	icmp[9] = 1
	ext := v6(0)
	ext[6] = 0 // hop-by-hop header: not parsed, written as is
	runs := func(a ...[]int) [][]int { return a }
	cases := []struct {
		name  string
		pkts  [][]byte
		uso   bool
		want  [][]int
		kinds []string // per frame: "gso", "csum" or "raw"; nil: not checked
	}{
		{"in sequence", seq(3), false, runs([]int{0, 1, 2}), []string{"gso"}},
		{"ipv6", [][]byte{v6(0), v6(1), v6(2)}, false, runs([]int{0, 1, 2}), []string{"gso"}},
		{"single", seq(1), false, runs([]int{0}), []string{"raw"}},
		{"gap in seq", [][]byte{tcpSeg(0, nil), tcpSeg(1, nil), tcpSeg(3, func(s *spec) { s.id = 9 })}, false, runs([]int{0, 1}, []int{2}), nil},
		{"different ack", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.ack++ })}, false, runs([]int{0}, []int{1}), nil},
		{"different window", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.win++ })}, false, runs([]int{0}, []int{1}), nil},
		{"SYN", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.flags = tcpFlagSYN | tcpFlagACK })}, false, runs([]int{0}, []int{1}), nil},
		{"FIN", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.flags = tcpFlagFIN | tcpFlagACK })}, false, runs([]int{0}, []int{1}), nil},
		{"RST", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.flags = tcpFlagRST | tcpFlagACK })}, false, runs([]int{0}, []int{1}), nil},
		{"URG", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.flags = tcpFlagURG | tcpFlagACK })}, false, runs([]int{0}, []int{1}), nil},
		{"ECE", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.flags = tcpFlagECE | tcpFlagACK })}, false, runs([]int{0}, []int{1}), nil},
		{"PSH ends a run", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.flags = tcpFlagPSH | tcpFlagACK }), tcpSeg(2, nil)}, false, runs([]int{0, 1}, []int{2}), nil},
		{"PSH first", [][]byte{with(0, func(s *spec) { s.flags = tcpFlagPSH | tcpFlagACK }), tcpSeg(1, nil)}, false, runs([]int{0}, []int{1}), nil},
		{"options differ", [][]byte{with(0, func(s *spec) { s.opts = []byte{1, 1, 1, 1} }), with(1, func(s *spec) { s.opts = []byte{1, 1, 1, 0} })}, false, runs([]int{0}, []int{1}), nil},
		{"same options", [][]byte{with(0, func(s *spec) { s.opts = []byte{1, 1, 1, 1} }), with(1, func(s *spec) { s.opts = []byte{1, 1, 1, 1} })}, false, runs([]int{0, 1}), nil},
		{"different TOS", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.tos = 4 })}, false, runs([]int{0}, []int{1}), nil},
		{"different TTL", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.ttl = 3 })}, false, runs([]int{0}, []int{1}), nil},
		{"different DF", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.noDF = true })}, false, runs([]int{0}, []int{1}), nil},
		{"IPv4 ID not next", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.id = 7 })}, false, runs([]int{0}, []int{1}), nil},
		{"IPv6 flow label differs", [][]byte{v6(0), tcpSeg(1, func(s *spec) { s.v6 = true; s.tos = 1 })}, false, runs([]int{0}, []int{1}), nil},
		{"fragment", [][]byte{tcpSeg(0, nil), func() []byte { p := tcpSeg(1, nil); p[6] |= ipv4FlagMF; return p }()}, false, runs([]int{0}, []int{1}), []string{"raw", "raw"}},
		{"oversize", big(46, 1448), false, runs(seqInts(0, 45), []int{45}), []string{"gso", "raw"}},
		{"64 segments", big(70, 100), false, runs(seqInts(0, 64), seqInts(64, 70)), []string{"gso", "gso"}},
		{"after a short one", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.payload = s.payload[:500] }), with(2, func(s *spec) { s.seq -= 500 })}, false, runs([]int{0, 1}, []int{2}), nil},
		{"bigger than the first", [][]byte{with(0, func(s *spec) { s.payload = s.payload[:500] }), with(1, func(s *spec) { s.seq -= 500 })}, false, runs([]int{0}, []int{1}), nil},
		{"interleaved flows", [][]byte{tcpSeg(0, nil), other(0), tcpSeg(1, nil), other(1), tcpSeg(2, nil)}, false, runs([]int{0, 2, 4}, []int{1, 3}), nil},
		{"reversed direction is another flow", [][]byte{tcpSeg(0, nil), with(1, func(s *spec) { s.src, s.dst = v4b, v4a })}, false, runs([]int{0}, []int{1}), nil},
		{"flow resumes after a break", [][]byte{tcpSeg(0, nil), tcpSeg(2, func(s *spec) { s.id = 8 }), tcpSeg(3, func(s *spec) { s.id = 9 })}, false, runs([]int{0}, []int{1, 2}), nil},
		{"pure ACK", [][]byte{with(0, func(s *spec) { s.payload = nil })}, false, runs([]int{0}), []string{"raw"}},
		{"udp with USO", [][]byte{udp(0, nil), udp(1, nil), udp(2, func(s *spec) { s.payload = s.payload[:10] })}, true, runs([]int{0, 1, 2}), []string{"gso"}},
		{"udp6 with USO", [][]byte{udp(0, func(s *spec) { s.v6 = true }), udp(1, func(s *spec) { s.v6 = true })}, true, runs([]int{0, 1}), []string{"gso"}},
		{"udp without USO", [][]byte{udp(0, nil), udp(1, nil)}, false, runs([]int{0}, []int{1}), []string{"raw", "raw"}},
		{"udp zero checksum", [][]byte{udp(0, func(s *spec) { s.udpZero = true }), udp(1, func(s *spec) { s.udpZero = true })}, true, runs([]int{0}, []int{1}), []string{"raw", "raw"}},
		{"udp bigger second", [][]byte{udp(0, func(s *spec) { s.payload = s.payload[:10] }), udp(1, nil)}, true, runs([]int{0}, []int{1}), nil},
		{"icmp", [][]byte{icmp}, false, runs([]int{0}), []string{"raw"}},
		{"ipv6 extension header", [][]byte{ext}, false, runs([]int{0}), []string{"raw"}},
		{"truncated", [][]byte{tcpSeg(0, nil)[:30], {0x45}, {}, tcpSeg(1, nil)[:60]}, false, runs([]int{0}, []int{1}, []int{2}, []int{3}), []string{"raw", "raw", "raw", "raw"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := planner{uso: c.uso}
			frames := planBatch(&p, c.pkts)
			var got [][]int
			var kinds []string
			for _, f := range frames {
				got = append(got, f.members)
				switch {
				case f.h.gsoType != gsoNone:
					kinds = append(kinds, "gso")
				case f.h.flags != 0:
					kinds = append(kinds, "csum")
				default:
					kinds = append(kinds, "raw")
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("groups %v, want %v", got, c.want)
			}
			if c.kinds != nil && !slices.Equal(kinds, c.kinds) {
				t.Fatalf("frames %v, want %v", kinds, c.kinds)
			}
			if err := checkRoundTrip(c.pkts, frames); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func seqInts(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestCoalesceHeader(t *testing.T) {
	var p planner
	frames := planBatch(&p, [][]byte{tcpSeg(0, nil), tcpSeg(1, nil), tcpSeg(2, func(s *spec) { s.payload = s.payload[:10] })})
	want := virtioHdr{flags: virtioFlagNeedsCsum, gsoType: gsoTCPv4, hdrLen: 40, gsoSize: 1000, csumStart: 20, csumOffset: 16}
	if len(frames) != 1 || frames[0].h != want {
		t.Fatalf("frames %+v, want one with header %+v", frames, want)
	}
	if n := len(frames[0].frame); n != 40+2010 {
		t.Fatalf("frame of %d bytes", n)
	}
	if err := refVerify(frames[0].frame); err == nil {
		t.Fatal("the frame's L4 checksum should be the partial pseudo-header sum, not a full one")
	}
}

func TestPlanNoAllocs(t *testing.T) {
	pkts := coalesceBatch(44)
	bufs := make([][]byte, len(pkts))
	for i := range pkts {
		bufs[i] = append(make([]byte, testOffset), pkts[i]...)
	}
	var p planner
	p.plan(bufs, testOffset) // grow scratch once
	allocs := testing.AllocsPerRun(50, func() {
		restoreHeaders(bufs, pkts) // prepare rewrote them last time
		p.plan(bufs, testOffset)
		for gi := range p.groups {
			p.prepare(&p.groups[gi], bufs, testOffset)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per plan", allocs)
	}
	if len(p.groups) != 1 {
		t.Fatalf("%d groups, want 1", len(p.groups))
	}
}

// restoreHeaders undoes prepare's header rewrites.
func restoreHeaders(bufs, pkts [][]byte) {
	for i := range pkts {
		copy(bufs[i][testOffset:testOffset+40], pkts[i])
	}
}

func coalesceBatch(n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, tcpSeg(0, func(s *spec) { s.seq, s.id, s.payload = uint32(i*1448), uint16(i), payload(1448, byte(i)) }))
	}
	return out
}

func BenchmarkCoalescePlan44(b *testing.B) {
	pkts := coalesceBatch(44)
	bufs := make([][]byte, len(pkts))
	for i := range pkts {
		bufs[i] = append(make([]byte, testOffset), pkts[i]...)
	}
	var p planner
	b.SetBytes(int64(44 * len(pkts[0])))
	for b.Loop() {
		restoreHeaders(bufs, pkts) // Write's caller hands over fresh packets each time
		p.plan(bufs, testOffset)
		for gi := range p.groups {
			p.prepare(&p.groups[gi], bufs, testOffset)
		}
	}
	if len(p.groups) != 1 {
		b.Fatalf("%d groups", len(p.groups))
	}
}
