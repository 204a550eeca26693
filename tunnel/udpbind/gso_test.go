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

func FuzzGSOGroups(f *testing.F) {
	f.Add([]byte{10, 10, 10, 5, 10})
	f.Fuzz(func(t *testing.T, lens []byte) {
		bufs := make([][]byte, len(lens))
		for i, n := range lens {
			bufs[i] = make([]byte, int(n)*300)
		}
		for i := 0; i < len(bufs); {
			end := gsoGroupEnd(bufs, i)
			if end <= i || end > len(bufs) || end-i > maxGSOSegments {
				t.Fatalf("group [%d,%d)", i, end)
			}
			total := 0
			for j := i; j < end; j++ {
				total += len(bufs[j])
				if j > i && (len(bufs[j]) > len(bufs[i]) || (j < end-1 && len(bufs[j]) != len(bufs[i]))) {
					t.Fatalf("group [%d,%d) mixes sizes", i, end)
				}
			}
			if end-i > 1 && total > maxGSOBytes {
				t.Fatalf("group [%d,%d) has %d bytes", i, end, total)
			}
			i = end
		}
	})
}
