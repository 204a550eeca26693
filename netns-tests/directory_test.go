package netnstests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"stunnel/internal/etcdtest"
	"stunnel/internal/netns"
)

// etcdFleet is a test etcd cluster, each member in its own namespace on the
// hub, reachable over https with a client certificate (plain http to a
// non-loopback etcd is refused by `check`, rightly).
type etcdFleet struct {
	members []*etcdtest.Member
	tls     etcdtest.TLSFiles
	prefix  string
}

// etcdOnHub makes n etcd namespaces; hosts maps each namespace to its
// underlay address and must be passed to l.hub afterwards.
func (l *lab) etcdOnHub(n int, hosts map[string]string) *etcdFleet {
	l.t.Helper()
	var ips []string
	for i := range n {
		ns := l.ns(fmt.Sprintf("etcd%d", i))
		ip := fmt.Sprintf("198.18.61.%d", 201+i)
		hosts[ns] = ip + "/24"
		ips = append(ips, ip)
	}
	dir := filepath.Join(l.dir, "etcd-tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		l.t.Fatal(err)
	}
	tls := etcdtest.MakeTLS(l.t, dir, ips)
	return &etcdFleet{tls: tls, prefix: "/stunnel/" + runID + "/"}
}

func (f *etcdFleet) start(t *testing.T, nsByIP map[string]string) {
	var ips, nss []string
	for i := 0; ; i++ {
		ip := fmt.Sprintf("198.18.61.%d", 201+i)
		ns, ok := nsByIP[ip]
		if !ok {
			break
		}
		ips, nss = append(ips, ip), append(nss, ns)
	}
	f.members = etcdtest.StartCluster(t, ips, nss, &f.tls)
}

// section is the [directory] table for a host.
func (f *etcdFleet) section() string {
	var urls []string
	for _, m := range f.members {
		urls = append(urls, fmt.Sprintf("%q", m.ClientURL))
	}
	return fmt.Sprintf("\n[directory]\netcd_endpoints = [%s]\nprefix = %q\nca_file = %q\ncert_file = %q\nkey_file = %q\ncache_file = \"st0.directory\"\n",
		strings.Join(urls, ", "), f.prefix, f.tls.CA, f.tls.ClientCert, f.tls.ClientKey)
}

// put publishes n's record with one `stunnel directory put`, run on
// operator's host (its config names the directory).
func (f *etcdFleet) put(t *testing.T, operator, n *node) {
	t.Helper()
	f.putRecord(t, operator, n, true)
}

// putRecord is put, with or without the endpoint in the record (without: the
// host publishes its own, advertise_endpoint).
func (f *etcdFleet) putRecord(t *testing.T, operator, n *node, withEndpoint bool) {
	t.Helper()
	args := []string{"directory", "put", "-c", operator.cfgPath,
		"-id", n.ID, "-public-key", n.pub(), "-allowed-ips", n.Address[0][:strings.IndexByte(n.Address[0], '/')] + "/32"}
	if withEndpoint {
		args = append(args, "-endpoint", n.endpoint())
	}
	out, err := netns.Run(operator.ns, stunnelBin, args...)
	if err != nil {
		t.Fatalf("directory put %s: %v\n%s", n.ID, err, out)
	}
}

func (f *etcdFleet) del(t *testing.T, operator *node, id string) {
	t.Helper()
	if out, err := netns.Run(operator.ns, stunnelBin, "directory", "delete", "-c", operator.cfgPath, id); err != nil {
		t.Fatalf("directory delete %s: %v\n%s", id, err, out)
	}
}

// directoryState is the "directory" object of `show --json`.
type directoryState struct {
	State    string `json:"state"`
	Source   string `json:"source"`
	Revision int64  `json:"revision"`
	Peers    int    `json:"peers"`
	Applied  int    `json:"applied"`
}

func (n *node) directory() (directoryState, error) {
	cmd := netns.Exec(n.ns, stunnelBin, "show", "--json", "-c", n.cfgPath)
	cmd.Env = append(os.Environ(), "STUNNEL_RUN_DIR="+n.runDir)
	out, err := cmd.Output()
	if err != nil {
		return directoryState{}, err
	}
	var all []struct {
		Directory *directoryState `json:"directory"`
	}
	if err := json.Unmarshal(out, &all); err != nil || len(all) != 1 || all[0].Directory == nil {
		return directoryState{}, fmt.Errorf("show of %s: no directory state: %v %s", n.ID, err, out)
	}
	return *all[0].Directory, nil
}

func (n *node) waitDirectory(t *testing.T, timeout time.Duration, what string, cond func(directoryState) bool) {
	t.Helper()
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("%s: last directory state seen: %s", n.ID, last)
		}
	}()
	waitFor(t, timeout, n.ID+": "+what, func() bool {
		s, err := n.directory()
		last = fmt.Sprintf("%+v (err %v)", s, err)
		return err == nil && cond(s)
	})
}

// TestDirectoryFleet: five hosts share one directory in a three-member etcd
// cluster and find each other through it alone (no [[peer]] anywhere); a
// sixth is added with one `stunnel directory put` and every host reaches
// it within 2 s; with one etcd member killed the directory keeps working.
func TestDirectoryFleet(t *testing.T) {
	l := newLab(t)
	hosts := map[string]string{}
	fleet := l.etcdOnHub(3, hosts)
	var nodes []*node
	for i := range 6 {
		ns := l.ns(fmt.Sprintf("h%d", i+1))
		under := fmt.Sprintf("198.18.61.%d/24", i+1)
		hosts[ns] = under
		nodes = append(nodes, l.newNode(ns, fmt.Sprintf("dir-h%d", i+1), under, fmt.Sprintf("198.19.61.%d/24", i+1)))
	}
	l.hub(hosts)
	nsByIP := map[string]string{}
	for ns, a := range hosts {
		nsByIP[addrOf(a)] = ns
	}
	fleet.start(t, nsByIP)
	for _, n := range nodes {
		n.Extra = fleet.section()
		n.writeConfig()
	}
	first, sixth := nodes[0], nodes[5]
	for _, n := range nodes[:5] {
		fleet.put(t, first, n)
	}
	for _, n := range nodes[:5] {
		n.start()
	}
	for _, n := range nodes[1:5] {
		pingUntil(t, first.ns, overlayOf(n), sessionWait)
	}
	pingUntil(t, nodes[4].ns, overlayOf(nodes[2]), sessionWait)

	// The sixth host: started knowing the directory, then announced with
	// one put; every other host must reach it within 2 s of the put.
	sixth.start()
	put := time.Now()
	fleet.put(t, first, sixth)
	putTook := time.Since(put)
	var wg sync.WaitGroup
	took := make([]time.Duration, 5)
	errs := make([]error, 5)
	for i, n := range nodes[:5] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := put.Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if tryPing(n.ns, overlayOf(sixth), 1, 1) == nil {
					took[i] = time.Since(put)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			errs[i] = fmt.Errorf("%s did not reach %s within 2s of the put", n.ID, sixth.ID)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("directory put took %v; put -> first ping answered from the new host: %v", putTook.Round(time.Millisecond), roundAll(took))

	// One etcd member killed: changes still reach every host.
	fleet.members[0].Stop()
	// The survivors elect a leader (if the dead one led) within about an
	// election timeout; an operator's command before that would be refused.
	for _, m := range fleet.members[1:] {
		m.WaitReady(t, 10*time.Second)
	}
	fleet.del(t, nodes[1], sixth.ID)
	for _, n := range nodes[:5] {
		waitFor(t, 10*time.Second, n.ID+" to drop "+sixth.ID+" after its record was deleted with one etcd member down", func() bool {
			s, err := n.tryShow()
			_, has := findPeer(s, sixth.ID)
			return err == nil && !has
		})
	}
	if err := tryPing(first.ns, overlayOf(sixth), 1, 1); err == nil {
		t.Error("the deleted host is still reachable")
	}
	fleet.put(t, nodes[2], sixth)
	pingUntil(t, nodes[3].ns, overlayOf(sixth), 5*time.Second)
	for _, n := range nodes[:5] {
		n.waitDirectory(t, 10*time.Second, "directory connected with 6 records", func(s directoryState) bool {
			return s.State == "connected" && s.Peers == 6 && s.Applied == 5
		})
	}
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return out
}

// TestDirectoryDaemon: directory changes applied to a running tunnel like a
// reload (an unchanged peer keeps its session and a transfer across the
// changes; a changed key makes a new session); etcd stopped and restarted
// under traffic without a break; a restart with etcd down runs from the
// sealed disk cache and catches up when etcd returns.
func TestDirectoryDaemon(t *testing.T) {
	l := newLab(t)
	hosts := map[string]string{}
	fleet := l.etcdOnHub(1, hosts)
	nodes := map[string]*node{}
	for i, n := range []string{"a", "b", "c"} {
		ns := l.ns(n)
		under := fmt.Sprintf("198.18.61.%d/24", i+1)
		hosts[ns] = under
		nodes[n] = l.newNode(ns, "dd-"+n, under, fmt.Sprintf("198.19.61.%d/24", i+1))
	}
	l.hub(hosts)
	nsByIP := map[string]string{}
	for ns, a := range hosts {
		nsByIP[addrOf(a)] = ns
	}
	fleet.start(t, nsByIP)
	etcd := fleet.members[0]
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	for _, n := range []*node{a, b, c} {
		n.Extra = fleet.section()
		n.writeConfig()
	}
	fleet.put(t, a, a)
	fleet.put(t, a, b)
	a.start()
	b.start()
	pingUntil(t, a.ns, overlayOf(b), sessionWait)
	before := a.waitSession(b.ID, sessionWait)

	// Add c, change c's key, remove c, all while a transfer to b is paused
	// half way: b's session and the transfer must not notice. c's record
	// has no endpoint: c publishes its own under a lease.
	c.Extra += fmt.Sprintf("advertise_endpoint = %q\n", c.endpoint())
	c.writeConfig()
	stream := startPausedStream(t, a.ns, b.ns, overlayOf(b), 8<<20, 4<<20)
	fleet.putRecord(t, b, c, false)
	c.start()
	pingUntil(t, a.ns, overlayOf(c), sessionWait)
	firstC := a.waitSession(c.ID, sessionWait)
	if !strings.Contains(c.log(), "published this host's endpoint") {
		t.Error("c did not publish its endpoint")
	}
	c.stop()
	c.Key = newKeyPair(t) // c's key is replaced: a new record, a new peer
	c.writeConfig()
	fleet.put(t, b, c)
	c.start()
	pingUntil(t, a.ns, overlayOf(c), sessionWait)
	secondC := a.waitSession(c.ID, sessionWait)
	if secondC.PublicKey == firstC.PublicKey || secondC.SessionID == firstC.SessionID {
		t.Errorf("c's key change did not make a new peer and session: %+v -> %+v", firstC, secondC)
	}
	fleet.del(t, b, c.ID)
	waitFor(t, 5*time.Second, "a to drop c", func() bool {
		s, err := a.tryShow()
		_, has := findPeer(s, c.ID)
		return err == nil && !has
	})
	if err := tryPing(a.ns, overlayOf(c), 1, 1); err == nil {
		t.Error("c is reachable after its record was deleted")
	}
	stream.release()
	if _, err := stream.finish(); err != nil {
		t.Fatalf("transfer to the unchanged peer across directory changes: %v", err)
	}
	if after := a.peer(b.ID); after.SessionID != before.SessionID {
		t.Errorf("directory changes disturbed b's session: %s -> %s", before.SessionID, after.SessionID)
	}

	// etcd stopped and restarted under traffic: no break.
	stream = startPausedStream(t, a.ns, b.ns, overlayOf(b), 8<<20, 2<<20)
	etcd.Stop()
	a.waitDirectory(t, 10*time.Second, "state retrying with etcd down", func(s directoryState) bool { return s.State == "retrying" && s.Peers == 2 })
	stream.release()
	if _, err := stream.finish(); err != nil {
		t.Fatalf("transfer while etcd is down: %v", err)
	}
	ping(t, a.ns, overlayOf(b), 2)
	etcd.Start(t)
	etcd.WaitReady(t, 20*time.Second)
	a.waitDirectory(t, 15*time.Second, "reconnected after etcd returned", func(s directoryState) bool { return s.State == "connected" })
	if after := a.peer(b.ID); after.SessionID != before.SessionID {
		t.Errorf("etcd's absence disturbed b's session: %s -> %s", before.SessionID, after.SessionID)
	}

	// Restart a with etcd down: it runs from its sealed disk cache.
	if code := a.stop(); code != 0 {
		t.Fatalf("a exited with %d", code)
	}
	cache := filepath.Join(a.dir, "st0.directory")
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("disk cache %s: %v %v", cache, fi, err)
	}
	etcd.Stop()
	a.start()
	a.waitDirectory(t, 5*time.Second, "peers from the disk cache", func(s directoryState) bool { return s.Source == "cache" && s.Peers == 2 })
	pingUntil(t, a.ns, overlayOf(b), sessionWait)
	etcd.Start(t)
	etcd.WaitReady(t, 20*time.Second)
	fleet.put(t, b, c)
	a.waitDirectory(t, 15*time.Second, "caught up with etcd", func(s directoryState) bool {
		return s.State == "connected" && s.Source == "etcd" && s.Peers == 3
	})
}
