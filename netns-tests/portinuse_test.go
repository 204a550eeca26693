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
	out, code := upMustFail(t, netns.Exec(ns, stunnelBin, "up", "-c", n.cfgPath))
	if code != 1 {
		t.Fatalf("up with the port taken: exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"UDP port 51820 is already in use", "dual-stack IPv6", "ss -uapn", "listen_port"} {
		if !strings.Contains(out, want) {
			t.Errorf("error lacks %q:\n%s", want, out)
		}
	}
	if n.hasDevice() {
		t.Error("the TUN device is left behind after the failed start")
	}
}

// An [interface] name that is taken makes `up` exit 1 with one line about
// the name, not the "is /dev/net/tun there, CAP_NET_ADMIN?" hint of a TUN
// device that cannot be made at all: an interface of another kind (here a
// veth; WireGuard's wg0 alike) and a TUN device another daemon holds (a
// second stunnel with the same name). The running one is left alone.
func TestInterfaceNameTaken(t *testing.T) {
	l := newLab(t)
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", underA, nsB, "u0", underB)
	a := l.newNode(nsA, "host-a", underA, overA+"/24")
	a.start()

	second := l.newNode(nsA, "host-c", underA, "198.19.1.3/24")
	second.writeConfig()
	for _, c := range []struct {
		name, iface, want string
	}{
		{"another kind", "u0", "an interface named u0 exists and is not a TUN device"},
		{"held by another daemon", devName, "a TUN device named " + devName + " exists and another program holds it"},
	} {
		second.writeRaw(strings.Replace(second.config(), `name = "`+devName+`"`, `name = "`+c.iface+`"`, 1))
		out, code := upMustFail(t, netns.Exec(nsA, stunnelBin, "up", "-c", second.cfgPath))
		if code != 1 || !strings.Contains(out, c.want) || strings.Contains(out, "CAP_NET_ADMIN") || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: up with name %q: exit %d, want 1 and one line saying %q:\n%s", c.name, c.iface, code, c.want, out)
		}
	}
	if !a.hasDevice() {
		t.Fatal("the running daemon's device is gone after the failed starts")
	}
	if _, err := a.tryShow(); err != nil {
		t.Errorf("the running daemon no longer answers: %v", err)
	}
}
