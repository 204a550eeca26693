package netnstests

import (
	"fmt"
	"strings"
	"testing"
)

// Scenario 3: three hosts in a full mesh on one underlay segment, every pair
// exchanging traffic; a fourth host with a valid key but an ID nobody lists
// gets no session, and each of the others counts and names the refusal.
func TestMeshAndStranger(t *testing.T) {
	l := newLab(t)
	names := []string{"a", "b", "c", "d"}
	hosts := map[string]string{}
	nodes := make([]*node, len(names))
	for i, n := range names {
		ns := l.ns(n)
		under := fmt.Sprintf("198.18.3.%d/24", i+1)
		hosts[ns] = under
		nodes[i] = l.newNode(ns, "mesh-"+n, under, fmt.Sprintf("198.19.3.%d/24", i+1))
	}
	l.hub(hosts)
	mesh, stranger := nodes[:3], nodes[3]
	for _, x := range mesh {
		for j, y := range mesh {
			if x != y {
				x.addPeer(y, true, fmt.Sprintf("198.19.3.%d/32", j+1))
			}
		}
		// The stranger knows everyone; nobody knows the stranger.
		stranger.addPeer(x, true, overlayOf(x)+"/32")
	}
	for _, n := range nodes {
		n.start()
	}

	for _, x := range mesh {
		for _, y := range mesh {
			if x == y {
				continue
			}
			pingUntil(t, x.ns, overlayOf(y), sessionWait)
			ping(t, x.ns, overlayOf(y), 3)
		}
	}
	for i, x := range mesh {
		y := mesh[(i+1)%3]
		tcpStream(t, x.ns, y.ns, overlayOf(y), streamOpts{Size: 1 << 20})
		if p := x.peer(y.ID); p.SessionID == "" || p.RxBytes == 0 || p.TxBytes == 0 {
			t.Errorf("%s's view of %s after traffic: %+v", x.ID, y.ID, p)
		}
	}

	for _, x := range mesh {
		// The stranger's pings start handshakes that must be refused.
		if err := tryPing(stranger.ns, overlayOf(x), 2, 1); err == nil {
			t.Errorf("the stranger reached %s through the tunnel", x.ID)
		}
		waitFor(t, sessionWait, x.ID+" to show a refusal of "+stranger.ID, func() bool {
			s, err := x.tryShow()
			if err != nil {
				return false
			}
			_, ok := refusal(s, stranger.ID)
			return ok
		})
		r, _ := refusal(x.show(), stranger.ID)
		if !strings.Contains(strings.ToLower(r.Reason), "unknown peer") || r.Count < 1 {
			t.Errorf("%s's refusal of %s: %+v, want reason \"unknown peer id\" and a count", x.ID, stranger.ID, r)
		}
		if !strings.HasPrefix(r.Endpoint, stranger.Underlay+":") {
			t.Errorf("%s's refusal names endpoint %q, want the stranger's %s", x.ID, r.Endpoint, stranger.Underlay)
		}
		if _, listed := findPeer(x.show(), stranger.ID); listed {
			t.Errorf("%s lists the stranger as a peer", x.ID)
		}
		if p := stranger.peer(x.ID); p.SessionID != "" || p.Handshakes != 0 {
			t.Errorf("the stranger got a session with %s: %+v", x.ID, p)
		}
	}
	// The refusals did not disturb the mesh.
	for _, x := range mesh {
		for _, y := range mesh {
			if x != y {
				ping(t, x.ns, overlayOf(y), 1)
			}
		}
	}
}

// overlayOf is a node's first overlay address, without its length.
func overlayOf(n *node) string { return addrOf(n.Address[0]) }
