package netnstests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// Two tunnels with the same name (st0) in two network namespaces of one
// machine: each daemon gets its own STUNNEL_RUN_DIR, so their control
// sockets do not collide, and `stunnel show` reaches either one from any
// namespace, here the test's own, by pointing STUNNEL_RUN_DIR at it (a unix
// socket is a file, not a network-namespace object). README.md, "Several
// tunnels with one name".
func TestSameNameInTwoNamespacesShowFromOutside(t *testing.T) {
	l := newLab(t)
	a, b := l.twoHosts(nil)
	pingUntil(t, a.ns, overB, sessionWait)
	for _, n := range []*node{a, b} {
		cmd := exec.Command(stunnelBin, "show", "--json")
		cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+n.runDir)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("show of %s from the root namespace: %v: %s", n.ID, err, errb.String())
		}
		var all []status
		if err := json.Unmarshal(out.Bytes(), &all); err != nil || len(all) != 1 {
			t.Fatalf("show of %s: %v, %d tunnels: %s", n.ID, err, len(all), out.String())
		}
		if all[0].Name != devName || all[0].PeerID != n.ID {
			t.Errorf("show with %s's run dir found interface %q of %q", n.ID, all[0].Name, all[0].PeerID)
		}
	}
}
