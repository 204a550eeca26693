package netnstests

import "time"

// The two-host plan most scenarios use: hosts a and b on one veth link.
const (
	underA, underB = "198.18.1.1/24", "198.18.1.2/24"
	overA, overB   = "198.19.1.1", "198.19.1.2"
	over6A, over6B = "fd00:19:1::1", "fd00:19:1::2"
	sessionWait    = 15 * time.Second
)

// twoHosts makes namespaces a and b joined by veth u0 and prepares a daemon
// in each that lists the other as its peer with endpoint and overlay
// addresses. edit may change the configs before they start; it runs after
// the peers are listed. Both daemons are started and ready on return.
func (l *lab) twoHosts(edit func(a, b *node)) (a, b *node) {
	l.t.Helper()
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", underA, nsB, "u0", underB)
	a = l.newNode(nsA, "host-a", underA, overA+"/24", over6A+"/64")
	b = l.newNode(nsB, "host-b", underB, overB+"/24", over6B+"/64")
	a.addPeer(b, true, overB+"/32", over6B+"/128")
	b.addPeer(a, true, overA+"/32", over6A+"/128")
	if edit != nil {
		edit(a, b)
	}
	a.start()
	b.start()
	return a, b
}
