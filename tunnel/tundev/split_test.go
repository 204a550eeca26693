package tundev

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

const testOffset = 16

func testBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65536+testOffset)
	}
	return bufs, make([]int, n)
}

// splitLikeRead places the frame where Read would have read it (in
// bufs[0]) and splits it in place.
func splitLikeRead(h virtioHdr, frame []byte, bufs [][]byte, sizes []int) (int, error) {
	h.encode(bufs[0][testOffset-virtioHdrLen:])
	n := copy(bufs[0][testOffset:], frame)
	f, err := parseGSO(h, bufs[0][testOffset:testOffset+n])
	if err != nil {
		return 0, err
	}
	return f.splitInto(0, bufs, sizes, testOffset)
}

// expectSegs builds, with the packet builder, the packets a correct
// segmentation of s at gso bytes of payload must give.
func expectSegs(s spec, gso int) [][]byte {
	var out [][]byte
	all := s.payload
	for i := 0; i*gso < len(all); i++ {
		seg := s
		seg.payload = all[i*gso : min((i+1)*gso, len(all))]
		seg.seq = s.seq + uint32(i*gso)
		seg.id = s.id + uint16(i)
		seg.flags = s.flags
		if (i+1)*gso < len(all) {
			seg.flags &^= tcpFlagFIN | tcpFlagPSH
		}
		if i > 0 {
			seg.flags &^= tcpFlagCWR
		}
		out = append(out, build(seg))
	}
	return out
}

func TestSplit(t *testing.T) {
	ts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
	cases := []struct {
		name string
		s    spec
		gso  int
	}{
		{"tcp4", spec{seq: 1000, ack: 7, win: 500, id: 65534, payload: payload(5000, 1)}, 1400},
		{"tcp4 options", spec{seq: 0xfffffff0, opts: ts, payload: payload(4000, 2)}, 1388},
		{"tcp4 exact multiple", spec{seq: 5, payload: payload(2800, 3)}, 1400},
		{"tcp4 one segment", spec{seq: 5, payload: payload(100, 3)}, 1400},
		{"tcp4 FIN PSH CWR", spec{flags: tcpFlagACK | tcpFlagFIN | tcpFlagPSH | tcpFlagCWR, payload: payload(3000, 4)}, 1000},
		{"tcp6", spec{v6: true, seq: 9, tos: 0x28, payload: payload(6000, 5)}, 1380},
		{"tcp6 64k", spec{v6: true, payload: payload(65535-40-20, 6)}, 1440},
		{"udp4", spec{udp: true, sport: 53, dport: 4000, payload: payload(3500, 7)}, 1200},
		{"udp6", spec{v6: true, udp: true, payload: payload(2401, 8)}, 1200},
		{"tcp4 64k", spec{payload: payload(65535-40, 9)}, 1448},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, frame := superFrame(c.s, c.gso)
			want := expectSegs(c.s, c.gso)
			bufs, sizes := testBufs(len(want))
			n, err := splitLikeRead(h, frame, bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(want) {
				t.Fatalf("%d segments, want %d", n, len(want))
			}
			for i := range n {
				got := bufs[i][testOffset : testOffset+sizes[i]]
				if err := refVerify(got); err != nil {
					t.Errorf("segment %d: %v", i, err)
				}
				if !bytes.Equal(got, want[i]) {
					t.Errorf("segment %d differs:\n got %x\nwant %x", i, got[:min(60, len(got))], want[i][:min(60, len(want[i]))])
				}
			}
		})
	}
}

// TestSplitInParts hands a frame out over several calls, as Read does with
// a frame that does not fit in the bufs left.
func TestSplitInParts(t *testing.T) {
	s := spec{seq: 77, id: 3, flags: tcpFlagACK | tcpFlagPSH, payload: payload(10000, 1)}
	h, frame := superFrame(s, 1000)
	want := expectSegs(s, 1000)
	f, err := parseGSO(h, frame)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for from := 0; from < f.nseg; {
		bufs, sizes := testBufs(3)
		k, err := f.splitInto(from, bufs, sizes, testOffset)
		if err != nil || k == 0 {
			t.Fatalf("from %d: %d, %v", from, k, err)
		}
		for i := range k {
			got = append(got, bufs[i][testOffset:testOffset+sizes[i]])
		}
		from += k
	}
	if len(got) != len(want) {
		t.Fatalf("%d segments, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("segment %d differs", i)
		}
	}
}

func TestFinishChecksum(t *testing.T) {
	for _, s := range []spec{
		{payload: payload(1001, 1)},
		{v6: true, payload: payload(77, 2)},
		{udp: true, payload: payload(500, 3)},
		{v6: true, udp: true},
	} {
		h, pkt := superFrame(s, 1)
		h.gsoType, h.gsoSize = gsoNone, 0
		if err := finishChecksum(h, pkt); err != nil {
			t.Fatal(err)
		}
		if want := build(s); !bytes.Equal(pkt, want) {
			t.Errorf("%+v: completed checksum differs from the reference", s)
		}
	}
	h := virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 20, csumOffset: 16}
	if err := finishChecksum(h, make([]byte, 37)); err == nil {
		t.Error("checksum field past the end: no error")
	}
	h.csumOffset = 15
	if err := finishChecksum(h, make([]byte, 100)); err == nil {
		t.Error("odd csum_offset: no error")
	}
}

func TestSplitRejects(t *testing.T) {
	good := func() (virtioHdr, []byte) {
		return superFrame(spec{opts: make([]byte, 4), payload: payload(3000, 1)}, 1000)
	}
	good6 := func() (virtioHdr, []byte) { return superFrame(spec{v6: true, payload: payload(3000, 1)}, 1000) }
	cases := []struct {
		name string
		mut  func(h *virtioHdr, p []byte) []byte
		want string
		v6   bool
	}{
		{"unknown gso", func(h *virtioHdr, p []byte) []byte { h.gsoType = 2; return p }, "gso_type", false},
		{"udp ecn", func(h *virtioHdr, p []byte) []byte { h.gsoType = gsoUDPL4 | gsoECN; return p }, "ECN", false},
		{"gso size 0", func(h *virtioHdr, p []byte) []byte { h.gsoSize = 0; return p }, "gso_size 0", false},
		{"hdr_len past end", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 60000; return p }, "hdr_len", false},
		{"empty", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; return p[:0] }, "empty", false},
		{"v4 as TCPV6", func(h *virtioHdr, p []byte) []byte { h.gsoType = gsoTCPv6; return p }, "TCPV6", false},
		{"v6 as TCPV4", func(h *virtioHdr, p []byte) []byte { h.gsoType = gsoTCPv4; return p }, "TCPV4", true},
		{"version 5", func(h *virtioHdr, p []byte) []byte { p[0] = 0x55; return p }, "version", false},
		{"short v4", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; return p[:19] }, "short", false},
		{"short v6", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; return p[:39] }, "short", true},
		{"ihl 4", func(h *virtioHdr, p []byte) []byte { p[0] = 0x44; return p }, "IPv4 header length", false},
		{"ihl past end", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; p[0] = 0x4f; return p[:40] }, "IPv4 header length", false},
		{"v4 proto", func(h *virtioHdr, p []byte) []byte { p[9] = protoUDP; return p }, "protocol", false},
		{"v6 next header", func(h *virtioHdr, p []byte) []byte { p[6] = 0; return p }, "next header", true},
		{"fragment MF", func(h *virtioHdr, p []byte) []byte { p[6] |= ipv4FlagMF; return p }, "fragment", false},
		{"fragment offset", func(h *virtioHdr, p []byte) []byte { p[7] = 1; return p }, "fragment", false},
		{"csum_start", func(h *virtioHdr, p []byte) []byte { h.csumStart = 24; return p }, "csum_start", false},
		{"csum_offset", func(h *virtioHdr, p []byte) []byte { h.csumOffset = 6; return p }, "csum_offset", false},
		{"udp csum_offset", func(h *virtioHdr, p []byte) []byte { h.gsoType = gsoUDPL4; p[9] = protoUDP; return p }, "csum_offset", false},
		{"short tcp", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; return p[:39] }, "short of a TCP", false},
		{"data offset 4", func(h *virtioHdr, p []byte) []byte { p[32] = 4 << 4; return p }, "data offset", false},
		{"data offset past end", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; p[32] = 15 << 4; return p[:60] }, "data offset", false},
		{"no payload", func(h *virtioHdr, p []byte) []byte { h.hdrLen = 0; return p[:44] }, "no payload", false},
		{"segments too big", func(h *virtioHdr, p []byte) []byte { h.gsoSize = 65535; return p }, "over", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, p := good()
			if c.v6 {
				h, p = good6()
			}
			p = c.mut(&h, p)
			_, err := parseGSO(h, p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	// A buffer too small for a segment is an error, not a panic.
	h, p := good()
	f, err := parseGSO(h, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.splitInto(0, [][]byte{make([]byte, 100)}, make([]int, 1), testOffset); err == nil {
		t.Fatal("tiny buffer: no error")
	}
	_ = binary.BigEndian
}

func TestSplitNoAllocs(t *testing.T) {
	h, frame := superFrame(spec{payload: payload(65535-40, 1)}, 1448)
	bufs, sizes := testBufs(64)
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := splitLikeRead(h, frame, bufs, sizes); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per split", allocs)
	}
}

func BenchmarkSplitTCPv4_64K(b *testing.B) {
	h, frame := superFrame(spec{payload: payload(65535-40, 1)}, 1448)
	bufs, sizes := testBufs(64)
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := splitLikeRead(h, frame, bufs, sizes); err != nil {
			b.Fatal(err)
		}
	}
}
