package netnstests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/etcdtest"
	"stunnel/internal/netns"
	"stunnel/tickets"
)

// groupRing is a one-member etcd (https, client certificates) in its own
// namespace on the test's hub, holding a gateway group's ticket-key ring,
// and the group secret file every gateway of the group reads.
type groupRing struct {
	l      *lab
	ns, ip string
	fleet  etcdFleet
	secret string // group secret file (0600)
}

// etcdRingHost adds the etcd namespace to hosts (pass them to l.hub
// afterwards) at ip, on the hub's underlay subnet.
func (l *lab) etcdRingHost(hosts map[string]string, ip string) *groupRing {
	l.t.Helper()
	r := &groupRing{l: l, ns: l.ns("etcd"), ip: ip}
	hosts[r.ns] = ip + "/24"
	dir := filepath.Join(l.dir, "ring-etcd-tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		l.t.Fatal(err)
	}
	r.fleet = etcdFleet{tls: etcdtest.MakeTLS(l.t, dir, []string{ip}), prefix: "/stunnel/" + runID + "/"}
	g, err := tickets.NewGroupSecret(nil)
	if err != nil {
		l.t.Fatal(err)
	}
	defer g.Zero()
	r.secret = filepath.Join(l.dir, "group.secret")
	if err := tickets.WriteGroupSecretFile(r.secret, g); err != nil {
		l.t.Fatal(err)
	}
	return r
}

func (r *groupRing) start(t *testing.T) {
	t.Helper()
	r.fleet.members = etcdtest.StartCluster(t, []string{r.ip}, []string{r.ns}, &r.fleet.tls)
}

// section is a gateway's [tickets] (ring in etcd, plus extra lines) and
// [directory] tables.
func (r *groupRing) section(extra string) string {
	return fmt.Sprintf("[tickets]\nring = \"etcd\"\ngroup_secret_file = %q\n%s\n%s", r.secret, extra, r.fleet.section())
}

// ticketRingState is the "ticket_ring" object of `show --json`, with the
// key names of "ticket_keys".
type ticketRingState struct {
	Role    string `json:"role"`
	Rotator string `json:"rotator"`
	State   string `json:"state"`
	Keys    int    `json:"keys"`
	Refused int    `json:"refused"`
	Added   uint64 `json:"added"`
	Deleted uint64 `json:"deleted"`
	Names   []string
	Sealing int // keys in their encrypt-decrypt life
}

func (n *node) ticketRing() (ticketRingState, error) {
	cmd := netns.Exec(n.ns, stunnelBin, "show", "--json", "-c", n.cfgPath)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+n.runDir)
	out, err := cmd.Output()
	if err != nil {
		return ticketRingState{}, err
	}
	var all []struct {
		Ring *ticketRingState `json:"ticket_ring"`
		Keys []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"ticket_keys"`
	}
	if err := json.Unmarshal(out, &all); err != nil || len(all) != 1 || all[0].Ring == nil {
		return ticketRingState{}, fmt.Errorf("show of %s: no ticket ring state: %v %s", n.ID, err, out)
	}
	r := *all[0].Ring
	for _, k := range all[0].Keys {
		r.Names = append(r.Names, k.Name)
		if k.State == "encrypt-decrypt" {
			r.Sealing++
		}
	}
	return r, nil
}

func (n *node) waitTicketRing(t *testing.T, timeout time.Duration, what string, cond func(ticketRingState) bool) ticketRingState {
	t.Helper()
	var last ticketRingState
	var lastErr error
	defer func() {
		if t.Failed() {
			t.Logf("%s: last ticket ring state seen: %+v (err %v)", n.ID, last, lastErr)
		}
	}()
	waitFor(t, timeout, n.ID+": "+what, func() bool {
		last, lastErr = n.ticketRing()
		return lastErr == nil && cond(last)
	})
	return last
}

// Scenario: TestGatewayFailover with the group's ticket-key ring in etcd
// (sealed under a group secret, rotated by an elected gateway) instead of
// a shared key file: A killed, the client resumes on B with A's ticket;
// A back, B killed, back on A by resumption.
func TestGatewayFailoverEtcdRing(t *testing.T) { gatewayFailover(t, true) }

// Scenario: the elected rotator is killed (-9). Keys live 10 s (sealing),
// so a new one is due every 5 s; rotator_ttl is 2 s. The client rekeys
// every 2 s, each time by resumption with the ticket the gateway gave it
// after the last one: a gateway that cannot seal gives no ticket and the
// next rekey is a full handshake. The survivor must become the rotator and
// keep adding keys, and every handshake across the takeover must be a
// resumption.
func TestTicketRotatorKilled(t *testing.T) {
	l := newLab(t)
	cl, gwA, gwB := l.ns("rcl"), l.ns("rga"), l.ns("rgb")
	const underC, underA, underB = "198.18.9.1/24", "198.18.9.2/24", "198.18.9.3/24"
	hosts := map[string]string{cl: underC, gwA: underA, gwB: underB}
	ring := l.etcdRingHost(hosts, "198.18.9.200")
	l.hub(hosts)
	ring.start(t)

	a := l.newNode(gwA, "rgw-a", underA, "198.19.4.1/24")
	b := l.newNode(gwB, "rgw-b", underB, "198.19.4.1/24")
	b.Key = a.Key
	c := l.newNode(cl, "rclient", underC, "198.19.4.10/24")
	const lifetimes = "encrypt_decrypt_lifetime = \"10s\"\ndecrypt_lifetime = \"10s\"\nrotator_ttl = \"2s\""
	for _, g := range []*node{a, b} {
		g.ID = "rgw"
		g.Peers = []peerConf{{ID: c.ID, PublicKey: c.pub(), AllowedIPs: []string{"198.19.4.10/32"}, Keepalive: "1s"}}
		g.Extra = ring.section(lifetimes)
	}
	a.start()
	b.start()

	var rotator, survivor *node
	waitFor(t, 15*time.Second, "one rotator and one follower", func() bool {
		ra, errA := a.ticketRing()
		rb, errB := b.ticketRing()
		if errA != nil || errB != nil {
			return false
		}
		switch {
		case ra.Role == "rotator" && rb.Role == "follower":
			rotator, survivor = a, b
		case rb.Role == "rotator" && ra.Role == "follower":
			rotator, survivor = b, a
		default:
			return false
		}
		return true
	})
	// The client talks to the follower (the one that survives): the kill
	// tests the rotation's takeover, not a failover (TestGatewayFailover*).
	c.Peers = []peerConf{{ID: "rgw", PublicKey: a.pub(), AllowedIPs: []string{"198.19.4.1/32"}, Keepalive: "1s",
		Extra: []string{fmt.Sprintf("endpoint = [%q, %q]", survivor.endpoint(), rotator.endpoint()), `failover_after = "3s"`}}}
	c.Session = []string{`rekey_after = "2s"`, `reject_after = "4s"`}
	c.start()
	pingUntil(t, cl, "198.19.4.1", sessionWait)
	before := survivor.waitTicketRing(t, 15*time.Second, "a key added at half-life reaches the follower", func(r ticketRingState) bool {
		return r.State == "connected" && r.Keys >= 2 && r.Sealing >= 1
	})
	// Resumptions flow: the client rekeys every 2 s by resumption.
	p0 := c.peer("rgw")
	waitFor(t, 10*time.Second, "resumed rekeys", func() bool { return c.peer("rgw").HandshakesResumed >= p0.HandshakesResumed+2 })
	p0 = c.peer("rgw")
	full0 := p0.Handshakes - p0.HandshakesResumed

	rotator.signal(syscall.SIGKILL)
	killed := time.Now()
	t.Logf("killed the rotator %s (%s); survivor %s (%s) had seen keys %v", rotator.ns, before.Rotator, survivor.ns, before.Role, before.Names)
	r := survivor.waitTicketRing(t, 15*time.Second, "the survivor to become the rotator", func(r ticketRingState) bool {
		return r.Role == "rotator" && r.Rotator != before.Rotator && r.Rotator != ""
	})
	took := time.Since(killed)
	if !strings.Contains(survivor.log(), "ticket ring: this gateway is the rotator") {
		t.Error("the survivor's log does not say it became the rotator")
	}
	// New keys keep coming from the new rotator, and the ring always has a
	// key that seals.
	seen := map[string]bool{}
	for _, n := range before.Names {
		seen[n] = true
	}
	newKeys := 0
	deadline := time.Now().Add(20 * time.Second)
	// Added too: the ring may hold a key (by its watch of etcd) a moment
	// before the rotator, whose write put it there, has counted it.
	for (newKeys < 2 || r.Added < 2) && time.Now().Before(deadline) {
		s, err := survivor.ticketRing()
		if err == nil {
			if s.Sealing == 0 {
				t.Errorf("%v after the kill: the survivor's ring has no key that seals (%v)", time.Since(killed).Round(time.Millisecond), s.Names)
			}
			for _, n := range s.Names {
				if !seen[n] {
					seen[n] = true
					newKeys++
				}
			}
			r = s
		}
		time.Sleep(100 * time.Millisecond)
	}
	if newKeys < 2 || r.Added < 2 {
		t.Fatalf("after the takeover: %d new keys seen, %d added by the survivor; want at least 2", newKeys, r.Added)
	}
	// Two more resumptions: their tickets were sealed under a key the new
	// rotator added.
	mid := c.peer("rgw").HandshakesResumed
	waitFor(t, 10*time.Second, "resumptions with tickets under the new rotator's keys", func() bool {
		return c.peer("rgw").HandshakesResumed >= mid+2
	})
	// Every handshake across the takeover was a resumption, and they went on.
	p1 := c.peer("rgw")
	full1 := p1.Handshakes - p1.HandshakesResumed
	t.Logf("rotator killed: survivor rotating %d ms after the kill; %d new keys since; client resumptions %d -> %d, full handshakes %d -> %d",
		took.Milliseconds(), newKeys, p0.HandshakesResumed, p1.HandshakesResumed, full0, full1)
	if p1.HandshakesResumed < p0.HandshakesResumed+5 {
		t.Errorf("client resumptions %d -> %d across the takeover, want at least 5 more", p0.HandshakesResumed, p1.HandshakesResumed)
	}
	if full1 != full0 {
		t.Errorf("%d full handshakes across the takeover: a ticket was not issued or not opened", full1-full0)
	}
	if refused := resumptionsRefused(t, survivor); len(refused) > 0 {
		t.Errorf("the survivor refused resumptions: %v", refused)
	}
	if p1.Endpoint != survivor.endpoint() || p1.Failovers != 0 {
		t.Errorf("client on %s with %d failovers, want on the survivor %s without any", p1.Endpoint, p1.Failovers, survivor.endpoint())
	}
	if err := tryPing(cl, "198.19.4.1", 3, 1); err != nil {
		t.Errorf("no traffic through the survivor at the end: %v", err)
	}
}

// resumptionsRefused is the interface-wide "resumptions_refused" of show.
func resumptionsRefused(t *testing.T, n *node) map[string]uint64 {
	t.Helper()
	cmd := netns.Exec(n.ns, stunnelBin, "show", "--json", "-c", n.cfgPath)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+n.runDir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("show of %s: %v", n.ID, err)
	}
	var all []struct {
		Refused map[string]uint64 `json:"resumptions_refused"`
	}
	if err := json.Unmarshal(out, &all); err != nil || len(all) != 1 {
		t.Fatalf("show of %s: %v %s", n.ID, err, out)
	}
	return all[0].Refused
}
