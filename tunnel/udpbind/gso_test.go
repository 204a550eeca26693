package udpbind

import (
	"slices"
	"testing"
)

func groups(lens ...int) []int {
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = make([]byte, n)
	}
	var ends []int
	for i := 0; i < len(bufs); {
		i = gsoGroupEnd(bufs, i)
		ends = append(ends, i)
	}
	return ends
}

func TestGSOGroups(t *testing.T) {
	rep := func(n, size int) []int { return slices.Repeat([]int{size}, n) }
	for _, tc := range []struct {
		name string
		lens []int
		want []int
	}{
		{"one", []int{100}, []int{1}},
		{"equal", rep(5, 1420), []int{5}},
		{"shorter last closes", []int{1420, 1420, 600, 1420}, []int{3, 4}},
		{"longer starts new", []int{600, 1420, 1420}, []int{1, 3}},
		{"two shorter", []int{1420, 600, 600}, []int{2, 3}},
		{"64 cap", rep(70, 100), []int{64, 70}},
		{"bytes cap", rep(50, 1420), []int{46, 50}},
		{"empty alone", []int{0, 0, 100}, []int{1, 2, 3}},
		{"empty ends run", []int{100, 100, 0}, []int{2, 3}},
		{"oversize alone", []int{65508, 100}, []int{1, 2}},
		{"max one", []int{65507, 1}, []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := groups(tc.lens...); !slices.Equal(got, tc.want) {
				t.Fatalf("group ends %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzGSOGroups: any batch splits into groups that keep the kernel's rules
// (at most maxGSOSegments, at most maxGSOBytes, equal sizes but a shorter
// last) and are as long as the rules allow. The input is runs of 3 bytes
// (count, size hi, size lo): whole runs of equal datagrams, so the fuzzer
// reaches the segment and byte caps, empty and oversize datagrams, which
// single bytes times 300 never did.
func FuzzGSOGroups(f *testing.F) {
	run := func(n int, size int) []byte { return []byte{byte(n), byte(size >> 8), byte(size)} }
	f.Add([]byte{10, 10, 10, 5, 10}) // the old seed, now runs
	f.Add(slices.Concat(run(70, 100)))
	f.Add(slices.Concat(run(50, 1420)))
	f.Add(slices.Concat(run(3, 1420), run(1, 600), run(2, 1420)))
	f.Add(slices.Concat(run(2, 0), run(1, 100), run(1, 0)))
	f.Add(slices.Concat(run(1, 65507), run(1, 1), run(1, 65508), run(2, 65535)))
	f.Add(slices.Concat(run(45, 1452), run(1, 1452), run(1, 1)))
	zeros := make([]byte, 1<<16) // only lengths matter: share one array
	f.Fuzz(func(t *testing.T, in []byte) {
		var bufs [][]byte
		for len(in) >= 3 && len(bufs) < 512 {
			n, size := int(in[0]), int(in[1])<<8|int(in[2])
			in = in[3:]
			for range min(n, 512-len(bufs)) {
				bufs = append(bufs, zeros[:size])
			}
		}
		for i := 0; i < len(bufs); {
			end := gsoGroupEnd(bufs, i)
			if end <= i || end > len(bufs) || end-i > maxGSOSegments {
				t.Fatalf("group [%d,%d)", i, end)
			}
			first := len(bufs[i])
			total := 0
			for j := i; j < end; j++ {
				total += len(bufs[j])
				if j > i && (len(bufs[j]) == 0 || len(bufs[j]) > first || (j < end-1 && len(bufs[j]) != first)) {
					t.Fatalf("group [%d,%d) mixes sizes", i, end)
				}
			}
			if end-i > 1 && total > maxGSOBytes {
				t.Fatalf("group [%d,%d) has %d bytes", i, end, total)
			}
			// Maximal: the next datagram could not have joined.
			if end < len(bufs) && first != 0 && first <= maxGSOBytes && len(bufs[end-1]) == first &&
				end-i < maxGSOSegments {
				if n := len(bufs[end]); n != 0 && n <= first && total+n <= maxGSOBytes {
					t.Fatalf("group [%d,%d) stopped before datagram %d (%d bytes) that fits", i, end, end, n)
				}
			}
			i = end
		}
	})
}
