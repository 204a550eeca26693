package udpbind

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/internal/netns"
	"stunnel/internal/roottest"
)

func needNetns(t *testing.T) { roottest.Require(t, "network namespaces") }

// openIn opens a Bind whose sockets live in namespace ns.
func openIn(t *testing.T, ns string) *testBind {
	t.Helper()
	b := New()
	var fns []conn.ReceiveFunc
	var port uint16
	err := netns.Do(ns, func() (err error) {
		fns, port, err = b.Open(0)
		return err
	})
	if err != nil {
		t.Fatalf("Open in %s: %v", ns, err)
	}
	t.Cleanup(func() { b.Close() })
	return &testBind{b, fns, port}
}

// Over a device without transmit checksum offload older kernels refuse UDP
// GSO with EIO (the bind then turns GSO off), newer ones checksum in
// software; either way every datagram arrives, in order.
func TestNoChecksumOffloadDevice(t *testing.T) {
	needNetns(t)
	nsA := fmt.Sprintf("udpb-a-%d", os.Getpid())
	nsB := fmt.Sprintf("udpb-b-%d", os.Getpid())
	for _, ns := range []string{nsA, nsB} {
		if err := netns.Add(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { netns.Delete(ns) })
	}
	if err := netns.Veth(nsA, "ub0", netip.MustParsePrefix("198.18.77.1/24"),
		nsB, "ub1", netip.MustParsePrefix("198.18.77.2/24")); err != nil {
		t.Fatal(err)
	}
	if out, err := netns.Run(nsA, "ethtool", "-K", "ub0", "tx", "off"); err != nil {
		t.Fatalf("ethtool -K ub0 tx off: %v: %s", err, out)
	}
	a, b := openIn(t, nsA), openIn(t, nsB)
	bufs := make([][]byte, 10)
	for i := range bufs {
		bufs[i] = payload(5, i, 1000)
	}
	if err := a.Send(bufs, b.ep(t, "198.18.77.2")); err != nil {
		t.Fatalf("Send over a device without checksum offload: %v", err)
	}
	if a.noGSO.Load() {
		t.Logf("kernel refused GSO without checksum offload: GSO turned off (stats %+v)", a.Stats())
	} else {
		t.Logf("kernel sent GSO without checksum offload (stats %+v)", a.Stats())
	}
	out := collect(t, b, b.fns[0], len(bufs), BatchSize, 1<<16)
	for i := range out {
		if string(out[i].data) != string(bufs[i]) {
			t.Fatalf("datagram %d out of place", i)
		}
	}
}
