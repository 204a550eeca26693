package tundev

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzSplit: any virtio header and frame bytes give either an error or
// segments that are each a well-formed packet with valid checksums, of at
// most gso_size payload, together carrying the frame's payload, and equal
// byte for byte to the reference segmenter's (IPv4 IDs, TCP sequence
// numbers, FIN/PSH on the last segment only, CWR on the first only).
func FuzzSplit(f *testing.F) {
	for _, s := range []spec{
		{payload: payload(3000, 1)},
		{v6: true, flags: tcpFlagACK | tcpFlagFIN | tcpFlagPSH | tcpFlagCWR, opts: []byte{1, 1, 1, 1}, payload: payload(2000, 2)},
		{udp: true, payload: payload(2500, 3)},
		{v6: true, udp: true, payload: payload(100, 4)},
	} {
		h, frame := superFrame(s, 700)
		var b [virtioHdrLen]byte
		h.encode(b[:])
		f.Add(append(b[:], frame...))
		h.gsoType = gsoNone
		h.encode(b[:])
		f.Add(append(b[:], frame...))
	}
	bufs, sizes := testBufs(8)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < virtioHdrLen || len(data) > 65535+virtioHdrLen {
			return
		}
		h := decodeVirtioHdr(data)
		if h.gsoType == gsoNone {
			_ = finishChecksum(h, append([]byte{}, data[virtioHdrLen:]...))
			return
		}
		n := copy(bufs[0][testOffset:], data[virtioHdrLen:])
		g, err := parseGSO(h, bufs[0][testOffset:testOffset+n])
		if err != nil {
			return
		}
		want := refSegment(h, append([]byte{}, data[virtioHdrLen:]...))
		if len(want) != g.nseg {
			t.Fatalf("%d segments, the reference makes %d", g.nseg, len(want))
		}
		if g.nseg > len(bufs) {
			// Hand it out in parts from a copy, as Read does with a held frame.
			g.pkt = append([]byte{}, g.pkt...)
		}
		total := 0
		for from := 0; from < g.nseg; {
			k, err := g.splitInto(from, bufs, sizes, testOffset)
			if err != nil {
				t.Fatalf("split after a successful parse: %v", err)
			}
			for i := range k {
				seg := bufs[i][testOffset : testOffset+sizes[i]]
				if err := refVerify(seg); err != nil {
					t.Fatalf("segment %d: %v", from+i, err)
				}
				if !bytes.Equal(seg, want[from+i]) {
					t.Fatalf("segment %d differs from the reference:\n got %x\nwant %x", from+i, seg[:min(80, len(seg))], want[from+i][:min(80, len(want[from+i]))])
				}
				pl := sizes[i] - g.hdrLen
				if pl <= 0 || pl > g.gsoSize {
					t.Fatalf("segment %d: %d bytes of payload, gso_size %d", from+i, pl, g.gsoSize)
				}
				total += pl
			}
			from += k
		}
		if total != n-g.hdrLen {
			t.Fatalf("segments carry %d payload bytes, frame %d", total, n-g.hdrLen)
		}
	})
}

// FuzzCoalesce: any batch of packets plans without panicking, and every
// frame, re-segmented, gives back exactly the input packets in per-flow
// order. The first byte picks raw packets (length-prefixed) or packets built
// from fuzzed header fields, which reach the coalescing rules far more often.
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	var raw []byte
	raw = append(raw, 0)
	for _, p := range coalesceBatch(3) {
		raw = binary.BigEndian.AppendUint16(raw, uint16(len(p)))
		raw = append(raw, p...)
	}
	f.Add(raw)
	// Structure-aware seeds (6-byte records, see fuzzPackets): long runs of
	// one flow for each family and protocol, with a corrupted byte, a PSH,
	// a seq gap, a window change and an IPv4 UDP "no checksum" in between,
	// so the fuzzer starts inside the merging rules instead of finding them.
	rec := func(flow, sizeSel, size, seed, what, arg byte) []byte {
		return []byte{flow, sizeSel, size, seed, what, arg}
	}
	for _, mode := range []byte{1, 3, 5, 7, 9, 11, 13, 15} {
		var in []byte
		in = append(in, mode)
		for i := range 20 {
			in = append(in, rec(0, 0, 0, byte(i), 0, 0)...)
		}
		in = append(in, rec(0, 0, 0, 0, 128, 60)...) // corrupt a byte
		in = append(in, rec(0, 0, 0, 1, 0, 0)...)
		in = append(in, rec(1, 0, 0, 0, 0, 0)...)  // another flow
		in = append(in, rec(0, 0, 0, 2, 1, 0)...)  // PSH
		in = append(in, rec(0, 0, 0, 3, 8, 7)...)  // seq gap
		in = append(in, rec(0, 0, 0, 4, 32, 9)...) // window
		in = append(in, rec(0, 0, 0, 0, 0, 0)...)  // seed 0: UDP without checksum
		in = append(in, rec(0, 1, 10, 5, 0, 0)...) // short: closes the run
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mode, data := data[0], data[1:]
		var pkts [][]byte
		if mode&1 == 0 {
			for len(data) >= 2 && len(pkts) < batchSize {
				n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
				pkts = append(pkts, append([]byte{}, data[2:2+n]...))
				data = data[2+n:]
			}
		} else {
			pkts = fuzzPackets(mode, data)
		}
		p := planner{uso: mode&2 != 0}
		frames := planBatch(&p, pkts)
		if err := checkRoundTrip(pkts, frames); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzPackets builds a batch from 6-byte records of fuzzed choices: mostly
// the next segment of a flow, with a fuzzed flow, flags, size and header
// differences.
func fuzzPackets(mode byte, data []byte) [][]byte {
	var pkts [][]byte
	seq := [4]uint32{}
	id := [4]uint16{}
	for len(data) >= 6 && len(pkts) < batchSize {
		r := data[:6]
		data = data[6:]
		fl := int(r[0] & 3)
		s := spec{v6: mode&4 != 0, udp: mode&8 != 0, sport: uint16(1000 + fl), dport: 80,
			seq: seq[fl], id: id[fl], ack: 1, win: 100}
		size := 200
		switch r[1] & 3 {
		case 1:
			size = int(r[2])
		case 2:
			size = 200 + int(r[2])
		}
		s.payload = payload(size, r[3])
		s.flags = tcpFlagACK
		if r[4]&1 != 0 {
			s.flags |= tcpFlagPSH
		}
		if r[4]&2 != 0 {
			s.flags = r[5]
		}
		if r[4]&4 != 0 {
			s.ttl = r[5]
		}
		if r[4]&8 != 0 {
			s.seq += uint32(r[5])
		}
		if r[4]&16 != 0 {
			s.id += uint16(r[5])
		}
		if r[4]&32 != 0 {
			s.win = uint16(r[5])
		}
		if r[4]&64 != 0 {
			s.opts = []byte{1, 1, 1, r[5]}
		}
		s.udpZero = s.udp && r[3] == 0 // IPv4 UDP "no checksum"
		pkt := build(s)
		if r[4]&128 != 0 && len(pkt) > int(r[5]) {
			pkt[r[5]] ^= r[3] // corrupt any byte
		}
		seq[fl] = s.seq + uint32(size)
		id[fl] = s.id + 1
		pkts = append(pkts, pkt)
	}
	return pkts
}
