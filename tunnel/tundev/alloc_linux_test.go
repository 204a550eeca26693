package tundev

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
)

// echoRequest is an ICMP echo request from 198.19.250.9 to .1.
func echoRequest(seq uint16) []byte { return echoRequestOf(seq, 76) }

// echoRequestOf is an echo request from 198.19.250.9 with n bytes of ICMP
// (n >= 28).
func echoRequestOf(seq uint16, n int) []byte {
	pkt := build(spec{src: []byte{198, 19, 250, 9}, dst: v4a, payload: payload(n-tcpHdrMin, 1)})
	pkt[9] = 1 // ICMP, written over a TCP-shaped packet: 20 + 20 + n-20 bytes
	icmp := pkt[ipv4HdrMin:]
	clear(icmp[:8])
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[6:], seq)
	binary.BigEndian.PutUint16(icmp[2:], ^uint16(refSum(icmp, 0)))
	pkt[10], pkt[11] = 0, 0
	binary.BigEndian.PutUint16(pkt[10:], ^uint16(refSum(pkt[:ipv4HdrMin], 0)))
	return pkt
}

// TestDeviceNoAllocs: neither Read nor Write allocates per call.
func TestDeviceNoAllocs(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	d := newDevice(t, ns, "198.19.250.1/24")
	bufs, sizes := testBufs(batchSize)
	out := make([][]byte, 1)
	pkt := echoRequest(1)
	allocs := testing.AllocsPerRun(100, func() {
		out[0] = bufs[0][:testOffset+copy(bufs[0][testOffset:], pkt)]
		if _, err := d.Write(out, testOffset); err != nil {
			t.Fatal(err)
		}
		n, err := d.Read(bufs[1:], sizes[1:], testOffset)
		if err != nil || n == 0 {
			t.Fatalf("reading the echo reply: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Write+Read", allocs)
	}

	// A coalescable batch (to a port nobody listens on).
	batch := coalesceBatch(44)
	wbufs := make([][]byte, len(batch))
	for i := range batch {
		wbufs[i] = make([]byte, testOffset+len(batch[i]))
	}
	before := d.Stats().WriteGroups
	allocs = testing.AllocsPerRun(50, func() {
		for i := range batch {
			copy(wbufs[i][testOffset:], batch[i]) // Write rewrote headers last time
		}
		if _, err := d.Write(wbufs, testOffset); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per coalesced Write", allocs)
	}
	if d.Stats().WriteGroups == before {
		t.Fatal("the batch was not coalesced")
	}
}

// TestConcurrentWriteAndClose: Writes from many goroutines share the
// scratch safely (run with -race), and Close waits them out.
func TestConcurrentWriteAndClose(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	d := newDevice(t, ns, "198.19.250.1/24")
	if _, err := d.Write([][]byte{make([]byte, 5)}, testOffset); err == nil {
		t.Fatal("Write of a buffer shorter than the offset: no error")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := coalesceBatch(20)
			bufs := make([][]byte, len(batch))
			for i := range batch {
				bufs[i] = make([]byte, testOffset+len(batch[i]))
			}
			for iter := 0; ; iter++ {
				for i := range batch {
					copy(bufs[i][testOffset:], batch[i])
				}
				if _, err := d.Write(bufs, testOffset); err != nil {
					if !errors.Is(err, os.ErrClosed) {
						errs <- err
					}
					return
				}
				if iter == 200 && w == 0 {
					d.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
