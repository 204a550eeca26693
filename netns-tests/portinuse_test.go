package netnstests

import (
	"net"
	"strings"
	"testing"

	"stunnel/internal/netns"
)

// The UDP port is held by a dual-stack IPv6 socket (what Go, and many
// daemons, open for ":51820"): `up` exits 1 with one line that does not
// blame IPv4 alone, and says how to find the holder and what to change.
func TestPortInUseByDualStackSocket(t *testing.T) {
	l := newLab(t)
	ns := l.ns("port")
	var holder net.PacketConn
	if err := netns.Do(ns, func() (err error) {
		holder, err = net.ListenPacket("udp", "[::]:51820")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	n := l.newNode(ns, "host-p", "198.18.50.1", overA+"/24")
	n.writeConfig()
	out, err := netns.Exec(ns, stunnelBin, "up", "-c", n.cfgPath).CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Fatalf("up with the port taken: exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"UDP port 51820 is already in use", "dual-stack IPv6", "ss -uapn", "listen_port"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error lacks %q:\n%s", want, out)
		}
	}
	if n.hasDevice() {
		t.Error("the TUN device is left behind after the failed start")
	}
}
