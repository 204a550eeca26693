package udpbind

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func putGRO(b []byte, size int32) int {
	d := putCmsgHdr(b, solUDP, udpGRO, sizeofGRO)
	binary.NativeEndian.PutUint32(d, uint32(size))
	return cmsgSpace(sizeofGRO)
}

func putRecvPktinfo4(b []byte, ifindex int32, specDst netip.Addr) int {
	d := putCmsgHdr(b, solIP, ipPktinfo, sizeofInPktinfo)
	binary.NativeEndian.PutUint32(d, uint32(ifindex))
	a := specDst.As4()
	copy(d[4:8], a[:])
	copy(d[8:12], []byte{9, 9, 9, 9}) // ipi_addr: not what we report
	return cmsgSpace(sizeofInPktinfo)
}

func TestCmsgRoundTrip(t *testing.T) {
	v4 := netip.MustParseAddr("198.18.0.7")
	v6 := netip.MustParseAddr("fd00::7")
	ll := netip.MustParseAddr("fe80::1")
	for _, tc := range []struct {
		name  string
		build func(b []byte) int
		want  recvInfo
	}{
		{"empty", func(b []byte) int { return 0 }, recvInfo{}},
		{"gro only", func(b []byte) int { return putGRO(b, 1420) }, recvInfo{gsoSize: 1420}},
		{"gro zero is none", func(b []byte) int { return putGRO(b, 0) }, recvInfo{}},
		{"gro negative is none", func(b []byte) int { return putGRO(b, -5) }, recvInfo{}},
		{"pktinfo4 then gro", func(b []byte) int {
			n := putRecvPktinfo4(b, 3, v4)
			return n + putGRO(b[n:], 64)
		}, recvInfo{gsoSize: 64, dst: v4, ifindex: 3}},
		{"pktinfo6 (send form reads back)", func(b []byte) int { return putPktinfo(b, v6, 5) }, recvInfo{dst: v6}},
		{"pktinfo6 link-local keeps ifindex", func(b []byte) int { return putPktinfo(b, ll, 5) }, recvInfo{dst: ll, ifindex: 5}},
		{"unknown message skipped", func(b []byte) int {
			n := len(putCmsgHdr(b, 1, 29, 8)) + cmsgHdrSz // SO_TIMESTAMP-ish
			return n + putGRO(b[n:], 100)
		}, recvInfo{gsoSize: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, 256)
			n := tc.build(b)
			if got := parseCmsg(b[:n]); got != tc.want {
				t.Fatalf("parseCmsg = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCmsgMalformed(t *testing.T) {
	b := make([]byte, 128)
	n := putGRO(b, 1000)
	// Length beyond the buffer: ignored, no panic.
	binary.NativeEndian.PutUint32(b, 1000)
	if wordSize == 8 {
		binary.NativeEndian.PutUint64(b, 1000)
	}
	if got := parseCmsg(b[:n]); got != (recvInfo{}) {
		t.Fatalf("overlong cmsg parsed as %+v", got)
	}
	// Length shorter than a header: ignored.
	n = putGRO(b, 1000)
	if wordSize == 8 {
		binary.NativeEndian.PutUint64(b, 3)
	} else {
		binary.NativeEndian.PutUint32(b, 3)
	}
	if got := parseCmsg(b[:n]); got != (recvInfo{}) {
		t.Fatalf("short cmsg parsed as %+v", got)
	}
	// GRO with a short payload: ignored.
	putCmsgHdr(b, solUDP, udpGRO, 2)
	if got := parseCmsg(b[:cmsgSpace(2)]); got != (recvInfo{}) {
		t.Fatalf("short UDP_GRO parsed as %+v", got)
	}
	// A good message after a truncated tail is still read.
	n = putGRO(b, 77)
	if got := parseCmsg(b[:n+5]); got.gsoSize != 77 {
		t.Fatalf("cmsg with a ragged tail: %+v", got)
	}
}

func TestPutSegmentAndSpace(t *testing.T) {
	b := make([]byte, sendCmsgSpace)
	n := putSegment(b, 1420)
	n += putPktinfo(b[n:], netip.MustParseAddr("fd00::1"), 0)
	if n != sendCmsgSpace {
		t.Fatalf("segment+pktinfo6 used %d bytes, sendCmsgSpace is %d", n, sendCmsgSpace)
	}
	if level := binary.NativeEndian.Uint32(b[wordSize:]); level != solUDP {
		t.Fatalf("level %d", level)
	}
	if got := binary.NativeEndian.Uint16(b[cmsgHdrSz:]); got != 1420 {
		t.Fatalf("segment size %d", got)
	}
	if putPktinfo(b, netip.Addr{}, 1) != 0 {
		t.Fatal("pktinfo for an invalid address was written")
	}
	if recvCmsgSpace < cmsgSpace(sizeofGRO)+cmsgSpace(sizeofIn6Pktinfo) {
		t.Fatal("recvCmsgSpace too small")
	}
}

func FuzzParseCmsg(f *testing.F) {
	b := make([]byte, 128)
	n := putRecvPktinfo4(b, 2, netip.MustParseAddr("198.18.0.1"))
	n += putGRO(b[n:], 1200)
	f.Add(b[:n])
	f.Add(b[:putPktinfo(b, netip.MustParseAddr("fd00::1"), 1)])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := parseCmsg(data)
		if r.gsoSize < 0 {
			t.Fatalf("negative gso size %d", r.gsoSize)
		}
	})
}
