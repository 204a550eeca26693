package netnstests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/internal/netns"
)

// A program built on the securesession library, with no TUN device and
// running unprivileged inside its namespace, is a peer of a real `stunnel
// up` daemon: its ICMP echo requests to the daemon's overlay address come
// back as replies through the daemon's kernel. A library peer with a key the
// daemon does not know gets nothing.
func TestLibraryPeerPingsDaemon(t *testing.T) {
	requireNetns(t)
	l := newLab(t)
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", underA, nsB, "u0", underB)
	gw := l.newNode(nsA, "gw", underA, overA+"/24")
	lib := newKeyPair(t)
	const libOverlay = "198.19.1.9"
	gw.Peers = append(gw.Peers, peerConf{ID: "laptop", PublicKey: lib.public, AllowedIPs: []string{libOverlay + "/32"}})
	gw.start()

	bin := filepath.Join(l.dir, "overlayping")
	build := exec.Command(goBinary(), "build", "-o", bin, "./securesession/examples/overlayping")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	ping := func(key keyPair, count, timeout string) (string, error) {
		// As nobody: the library needs no privilege.
		cmd := netns.Exec(nsB, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin,
			"-id", "laptop", "-key", key.private, "-peer", "gw="+gw.pub(), "-endpoint", gw.endpoint(),
			"-from", libOverlay, "-to", overA, "-count", count, "-timeout", timeout)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := ping(lib, "3", "15s")
	if err != nil || strings.Count(out, "reply from "+overA) != 3 {
		t.Fatalf("library ping through the daemon: %v\n%s", err, out)
	}
	p := gw.peer("laptop")
	if p.Handshakes < 1 || p.RxPackets < 3 || p.TxPackets < 3 {
		t.Fatalf("the daemon did not count the library's session: %+v", p)
	}
	if out, err := ping(newKeyPair(t), "1", "3s"); err == nil {
		t.Fatalf("a library peer with an unknown key got replies:\n%s", out)
	}
}
