package udpbind

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// roundTrip sends bufs from a to b and receives them all on b's IPv4
// socket, in this goroutine (the datagrams are queued on loopback before
// Send returns).
func roundTrip(tb testing.TB, a, b *testBind, ep conn.Endpoint, bufs, rbufs [][]byte, sizes []int, eps []conn.Endpoint) {
	if err := a.Send(bufs, ep); err != nil {
		tb.Fatal(err)
	}
	for got := 0; got < len(bufs); {
		n, err := b.fns[0](rbufs, sizes, eps)
		if err != nil {
			tb.Fatal(err)
		}
		got += n
	}
}

func TestNoAllocations(t *testing.T) {
	a, b := openBind(t), openBind(t)
	ep := b.ep(t, "127.0.0.1")
	for _, tc := range []struct {
		name string
		lens []int
	}{
		{"gso 64x1420", repeat(64, 1420)},
		{"mixed", []int{100, 1420, 60, 60, 60, 1500, 9000}},
	} {
		bufs := make([][]byte, len(tc.lens))
		for i, n := range tc.lens {
			bufs[i] = payload(3, i, n)
		}
		rbufs, sizes := mkbufs(BatchSize, 1<<16)
		eps := make([]conn.Endpoint, BatchSize)
		allocs := testing.AllocsPerRun(50, func() { roundTrip(t, a, b, ep, bufs, rbufs, sizes, eps) })
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per Send+receive, want 0", tc.name, allocs)
		}
	}
	// A reply through a received (cached, sticky) endpoint allocates nothing either.
	rbufs, sizes := mkbufs(BatchSize, 1<<16)
	eps := make([]conn.Endpoint, BatchSize)
	roundTrip(t, a, b, ep, [][]byte{{1}}, rbufs, sizes, eps)
	back := eps[0]
	one := [][]byte{make([]byte, 100)}
	allocs := testing.AllocsPerRun(50, func() { roundTrip(t, b, a, back, one, rbufs, sizes, eps) })
	if allocs != 0 {
		t.Errorf("sticky reply: %.1f allocations per Send+receive, want 0", allocs)
	}
}

// BenchmarkSendReceive64x1420: one Send of 64 datagrams of 1420 bytes over
// loopback and their receipt (GSO and GRO on), per op.
func BenchmarkSendReceive64x1420(b *testing.B) {
	benchRoundTrip(b, repeat(64, 1420), false)
}

// The same without GSO (every datagram its own message).
func BenchmarkSendReceive64x1420NoGSO(b *testing.B) {
	benchRoundTrip(b, repeat(64, 1420), true)
}

func BenchmarkSendReceive64x64(b *testing.B) {
	benchRoundTrip(b, repeat(64, 64), false)
}

func benchRoundTrip(b *testing.B, lens []int, noGSO bool) {
	x, y := openBind(b), openBind(b)
	x.noGSO.Store(noGSO)
	ep := y.ep(b, "127.0.0.1")
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = payload(4, i, n)
	}
	rbufs, sizes := mkbufs(BatchSize, 1<<16)
	eps := make([]conn.Endpoint, BatchSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(lens) * lens[0]))
	b.ResetTimer()
	for b.Loop() {
		roundTrip(b, x, y, ep, bufs, rbufs, sizes, eps)
	}
	b.ReportMetric(float64(b.N*len(lens))/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkStdNetBind64x1420 is the same round trip through wireguard-go's
// StdNetBind, for comparison.
func BenchmarkStdNetBind64x1420(b *testing.B) {
	x, y := conn.NewStdNetBind(), conn.NewStdNetBind()
	if _, _, err := x.Open(0); err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	fns, port, err := y.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	defer y.Close()
	ep, err := x.ParseEndpoint("127.0.0.1:" + strconv.Itoa(int(port)))
	if err != nil {
		b.Fatal(err)
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = payload(4, i, 1420)
	}
	rbufs, sizes := mkbufs(conn.IdealBatchSize, 1<<16)
	eps := make([]conn.Endpoint, conn.IdealBatchSize)
	b.ReportAllocs()
	b.SetBytes(64 * 1420)
	for b.Loop() {
		if err := x.Send(bufs, ep); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < len(bufs); {
			n, err := fns[0](rbufs, sizes, eps)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "packets/s")
}

// A GSO send refused with EIO (what kernels without software fallback say
// for devices that cannot checksum) turns GSO off for the bind and resends
// from the refused message on, without GSO; nothing is sent twice.
func TestGSOFallbackOnEIO(t *testing.T) {
	a, b := openBind(t), openBind(t)
	refused := 0
	a.sendmmsg = func(fd int, msgs []unix.Mmsghdr) (int, unix.Errno) {
		for i := range msgs {
			if msgs[i].Hdr.Controllen != 0 { // carries UDP_SEGMENT (no sticky source here)
				if i == 0 {
					refused++
					return -1, unix.EIO
				}
				return sendmmsg(fd, msgs[:i]) // a partial send, as the kernel does
			}
		}
		return sendmmsg(fd, msgs)
	}
	lens := append([]int{300, 900}, repeat(20, 1000)...)
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = payload(6, i, n)
	}
	if err := a.Send(bufs, b.ep(t, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if refused != 1 || !a.noGSO.Load() || a.Stats().GSOSends != 0 {
		t.Fatalf("refused %d times, noGSO %v, stats %+v; want GSO off after one refusal", refused, a.noGSO.Load(), a.Stats())
	}
	out := collect(t, b, b.fns[0], len(bufs), BatchSize, 1<<16)
	for i := range out {
		if string(out[i].data) != string(bufs[i]) {
			t.Fatalf("datagram %d out of place", i)
		}
	}
	if err := a.Send(bufs, b.ep(t, "127.0.0.1")); err != nil || refused != 1 {
		t.Fatalf("second Send: %v, refused %d times (GSO still tried)", err, refused)
	}
	collect(t, b, b.fns[0], len(bufs), BatchSize, 1<<16)
}
