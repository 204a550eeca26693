package udpbind

import (
	"bytes"
	"testing"
)

func mkbufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestSplitGRO(t *testing.T) {
	msg := make([]byte, 1000)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, tc := range []struct {
		name               string
		n, gso, off        int
		nbufs, bufSize     int
		wantSizes          []int
		wantNext, wantDrop int
	}{
		{"no gro", 1000, 0, 0, 4, 2000, []int{1000}, 1000, 0},
		{"even", 900, 300, 0, 4, 2000, []int{300, 300, 300}, 900, 0},
		{"short last", 1000, 300, 0, 8, 2000, []int{300, 300, 300, 100}, 1000, 0},
		{"gso larger than message", 200, 300, 0, 2, 2000, []int{200}, 200, 0},
		{"bufs run out", 1000, 300, 0, 2, 2000, []int{300, 300}, 600, 0},
		{"resume", 1000, 300, 600, 4, 2000, []int{300, 100}, 1000, 0},
		{"too big for buffer dropped", 1000, 300, 0, 4, 200, []int{100}, 1000, 3},
		{"no gro too big", 1000, 0, 0, 4, 999, nil, 1000, 1},
		{"empty message", 0, 0, 0, 4, 2000, nil, 0, 0},
		{"no bufs", 1000, 300, 0, 0, 2000, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs, sizes := mkbufs(tc.nbufs, tc.bufSize)
			f, next, dropped := splitGRO(msg[:tc.n], tc.gso, tc.off, bufs, sizes)
			if f != len(tc.wantSizes) || next != tc.wantNext || dropped != tc.wantDrop {
				t.Fatalf("splitGRO = %d filled, next %d, %d dropped; want %d, %d, %d",
					f, next, dropped, len(tc.wantSizes), tc.wantNext, tc.wantDrop)
			}
			// Contents: consecutive slices of msg, skipping dropped ones.
			pos := tc.off
			for i, want := range tc.wantSizes {
				if sizes[i] != want {
					t.Fatalf("sizes[%d] = %d, want %d", i, sizes[i], want)
				}
				for pos < tc.n && !bytes.Equal(bufs[i][:sizes[i]], msg[pos:pos+sizes[i]]) {
					pos += tc.gso // a dropped datagram was skipped
					if tc.gso == 0 || pos+sizes[i] > tc.n {
						t.Fatalf("buffer %d holds bytes that are not the next datagram", i)
					}
				}
				pos += sizes[i]
			}
		})
	}
}

func TestDatagramsIn(t *testing.T) {
	for _, tc := range []struct{ n, gso, want int }{
		{0, 0, 0}, {0, 100, 0}, {5, 0, 1}, {100, 100, 1}, {101, 100, 2}, {1000, 1, 1000}, {7, -3, 1},
	} {
		if got := datagramsIn(tc.n, tc.gso); got != tc.want {
			t.Errorf("datagramsIn(%d, %d) = %d, want %d", tc.n, tc.gso, got, tc.want)
		}
	}
}

// FuzzSplitGRO: whatever the lengths, sizes and cmsg bytes, splitting a
// message in calls of a few buffers hands out or drops every datagram
// exactly once, in order, and never panics.
func FuzzSplitGRO(f *testing.F) {
	b := make([]byte, 64)
	f.Add(uint16(1000), uint16(300), uint8(2), uint16(400), b[:putGRO(b, 300)])
	f.Add(uint16(65535), uint16(1420), uint8(7), uint16(1420), []byte{})
	f.Add(uint16(10), uint16(0), uint8(0), uint16(0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, n, gsoHint uint16, nbufs uint8, bufSize uint16, cmsg []byte) {
		info := parseCmsg(cmsg)
		gso := info.gsoSize
		if gso == 0 {
			gso = int(gsoHint)
		}
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		want := datagramsIn(len(msg), gso)
		bufs, sizes := mkbufs(int(nbufs%9)+1, int(bufSize))
		got, dropped, off := 0, 0, 0
		for calls := 0; off < len(msg); calls++ {
			if calls > len(msg)+1 {
				t.Fatalf("no progress at offset %d", off)
			}
			f, next, d := splitGRO(msg, gso, off, bufs, sizes)
			pos := off
			for i := range f {
				if sizes[i] > len(bufs[i]) || sizes[i] <= 0 {
					t.Fatalf("size %d in a %d-byte buffer", sizes[i], len(bufs[i]))
				}
				for !bytes.Equal(bufs[i][:sizes[i]], msg[pos:pos+sizes[i]]) {
					pos += gso
					if gso <= 0 || pos+sizes[i] > len(msg) {
						t.Fatalf("datagram %d out of order", got+i)
					}
				}
				pos += sizes[i]
			}
			if next <= off || next > len(msg) {
				t.Fatalf("next %d after %d in %d bytes", next, off, len(msg))
			}
			got, dropped, off = got+f, dropped+d, next
		}
		if got+dropped != want {
			t.Fatalf("%d handed out + %d dropped, message held %d", got, dropped, want)
		}
	})
}
