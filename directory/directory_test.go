package directory

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/etcdtest"
	"stunnel/internal/waitfor"
)

func testPeer(t testing.TB, id string, n int) conf.Peer {
	t.Helper()
	k, err := handshake.GeneratePrivateKey(bytes.NewReader(bytes.Repeat([]byte{byte(n), byte(n >> 8), 7}, 11)))
	if err != nil {
		t.Fatal(err)
	}
	return conf.Peer{
		ID:         id,
		PublicKey:  k.PublicKey(),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(n >> 8), byte(n)}), 32)},
	}
}

// watcher records OnChange calls.
type watcher struct {
	mu    sync.Mutex
	last  []conf.Peer
	calls int
}

func (w *watcher) onChange(ps []conf.Peer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = append([]conf.Peer(nil), ps...)
	w.calls++
}

func (w *watcher) ids() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := ""
	for _, p := range w.last {
		s += p.ID + ","
	}
	return s
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, timeout, 10*time.Millisecond, what, cond)
}

// waitRetrying waits for d to notice that m was stopped: within a health
// tick and its timeout (startDir's: 0.6 s), given 15 s on a loaded machine.
// A failure says what d saw: a last sync that kept moving means a health
// check was answered, by whatever listens at m's address now.
func waitRetrying(t testing.TB, d *Directory, m *etcdtest.Member) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for d.State().State != "retrying" {
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s stopped 15 s ago, and the directory still reports %+v", m.ClientURL, d.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCached starts a Directory with a disk cache and waits until it has
// listed the peers ids (as watcher.ids spells them) and written the cache.
func startCached(t testing.TB, m *etcdtest.Member, cache string, w *watcher, ids string) *Directory {
	t.Helper()
	d := startDir(t, m, cache, w)
	waitFor(t, 5*time.Second, "initial list", func() bool { return w.ids() == ids })
	waitFor(t, 5*time.Second, "the disk cache", func() bool { _, err := os.Stat(cache); return err == nil })
	return d
}

func client(t testing.TB, m *etcdtest.Member) *clientv3.Client {
	cli, err := Dial([]string{m.ClientURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func startDir(t testing.TB, m *etcdtest.Member, cache string, w *watcher) *Directory {
	t.Helper()
	priv := handshake.PrivateKey{1, 2, 3}
	return startWith(t, Options{Endpoints: []string{m.ClientURL}, Prefix: "/st/", CacheFile: cache, Key: MemoryKey(&priv)}, w)
}

// startWith starts a Directory with o, reporting to w, with the tests'
// short backoff and health interval, and closes it at the test's end.
func startWith(t testing.TB, o Options, w *watcher) *Directory {
	t.Helper()
	o.OnChange = w.onChange
	o.MinBackoff, o.MaxBackoff = 50*time.Millisecond, 300*time.Millisecond
	o.HealthInterval = 300 * time.Millisecond
	d, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestPutListDeleteAndWatch(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "b", 2)); err != nil {
		t.Fatal(err)
	}
	var w watcher
	d := startDir(t, m, "", &w)
	waitFor(t, 5*time.Second, "initial list", func() bool { return w.ids() == "b," })

	// Add, change, remove through the watch.
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "c", 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "c added", func() bool { return w.ids() == "b,c," })
	changed := testPeer(t, "c", 99)
	changed.AllowedIPs = testPeer(t, "c", 3).AllowedIPs
	if err := Put(ctx(t), cli, "/st/", changed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "c's key changed", func() bool {
		for _, p := range d.Peers() {
			if p.ID == "c" {
				return p.PublicKey == changed.PublicKey
			}
		}
		return false
	})
	entries, rev, err := List(ctx(t), cli, "/st/")
	if err != nil || len(entries) != 2 || entries[0].ID != "b" || entries[1].Err != nil || rev == 0 {
		t.Fatalf("List = %+v, %d, %v", entries, rev, err)
	}
	if err := Delete(ctx(t), cli, "/st/", "b"); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx(t), cli, "/st/", "b"); err != ErrNoRecord {
		t.Fatalf("deleting an absent record: %v, want ErrNoRecord", err)
	}
	waitFor(t, 2*time.Second, "b removed", func() bool { return w.ids() == "c," })
	st := d.State()
	if st.State != "connected" || st.Source != "etcd" || st.Revision < rev || st.Peers != 1 {
		t.Fatalf("state %+v", st)
	}
	// Keys outside peers/ and endpoints/, or outside the prefix, are not records.
	if _, err := cli.Put(ctx(t), "/st/other/c", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx(t), "/stx/peers/z", "x"); err != nil {
		t.Fatal(err)
	}
	// A record put after them is a barrier: the watch delivers in revision
	// order, so once d is seen the foreign keys have been judged too.
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "d", 4)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "d, put after the foreign keys", func() bool {
		return slices.Contains(strings.Split(w.ids(), ","), "d")
	})
	if got := w.ids(); got != "c,d," || d.State().Malformed != 0 {
		t.Fatalf("after foreign keys: %q %+v; want c and d, nothing malformed", got, d.State())
	}
}

func TestMalformedRecordsSkipped(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	good := testPeer(t, "good", 1)
	if err := Put(ctx(t), cli, "/st/", good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"notjson":  "{",
		"version2": fmt.Sprintf(`{"version":2,"public_key":%q,"allowed_ips":["10.77.9.1/32"]}`, testPeer(t, "x", 5).PublicKey),
		"unknown":  fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":["10.77.9.2/32"],"psk":"x"}`, testPeer(t, "x", 6).PublicKey),
		"badkey":   `{"version":1,"public_key":"AAAA","allowed_ips":["10.77.9.3/32"]}`,
		"badip":    fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":["10.77.9.3/24"]}`, testPeer(t, "x", 7).PublicKey),
		"noips":    fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":[]}`, testPeer(t, "x", 8).PublicKey),
		"shortka":  fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":["10.77.9.4/32"],"persistent_keepalive":"1ms"}`, testPeer(t, "x", 9).PublicKey),
		"trailing": fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":["10.77.9.5/32"]} {}`, testPeer(t, "x", 10).PublicKey),
	}
	for id, v := range bad {
		if _, err := cli.Put(ctx(t), "/st/peers/"+id, v); err != nil {
			t.Fatal(err)
		}
	}
	var w watcher
	d := startDir(t, m, "", &w)
	waitFor(t, 5*time.Second, "the good record", func() bool { return w.ids() == "good," })
	if st := d.State(); st.Malformed != len(bad) || st.MalformedTotal != uint64(len(bad)) {
		t.Fatalf("state %+v, want %d malformed", st, len(bad))
	}
	// Fixing a record through the watch makes it count no longer.
	ok := testPeer(t, "notjson", 11)
	if err := Put(ctx(t), cli, "/st/", ok); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the fixed record", func() bool { return w.ids() == "good,notjson," })
	if st := d.State(); st.Malformed != len(bad)-1 {
		t.Fatalf("state %+v after the fix", st)
	}
	// Breaking a good record removes it from the peers.
	if _, err := cli.Put(ctx(t), "/st/peers/good", "[]"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the broken record gone", func() bool { return w.ids() == "notjson," })
}

func TestEtcdAwayAndBack(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "b", 2)); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "sub", "st0.directory")
	var w watcher
	d := startCached(t, m, cache, &w, "b,")
	if fi, _ := os.Stat(cache); fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache mode %v, want 0600", fi.Mode().Perm())
	}

	m.Stop()
	waitRetrying(t, d, m)
	if got := w.ids(); got != "b," {
		t.Fatalf("peers while etcd is away: %q", got)
	}
	if d.State().LastError == "" {
		t.Fatal("no last_error while retrying")
	}

	// A second daemon starting now, with etcd down, uses the disk cache.
	var w2 watcher
	d2 := startDir(t, m, cache, &w2)
	waitFor(t, 2*time.Second, "peers from the disk cache", func() bool { return w2.ids() == "b," })
	if st := d2.State(); st.Source != "cache" {
		t.Fatalf("state at start with etcd down: %+v", st)
	}

	m.Start(t)
	m.WaitReady(t, 20*time.Second)
	if err := Put(ctx(t), client(t, m), "/st/", testPeer(t, "c", 3)); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		d *Directory
		w *watcher
	}{{d, &w}, {d2, &w2}} {
		waitFor(t, 10*time.Second, "catching up after etcd returns", func() bool { return x.w.ids() == "b,c," })
		if st := x.d.State(); st.State != "connected" || st.Source != "etcd" {
			t.Fatalf("state after etcd returned: %+v", st)
		}
	}
}

func TestCompactedWatchRelists(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	var first int64
	for i, id := range []string{"b", "c", "d"} {
		if err := Put(ctx(t), cli, "/st/", testPeer(t, id, i+2)); err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx(t), "/st/peers/"+id)
		if err != nil {
			t.Fatal(err)
		}
		if first == 0 {
			first = resp.Header.Revision
		}
	}
	resp, err := cli.Get(ctx(t), "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx(t), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	var w watcher
	d := startDir(t, m, "", &w)
	waitFor(t, 5*time.Second, "initial list", func() bool { return w.ids() == "b,c,d," })
	// A watch from before the compaction (as after a long absence) must
	// say so, so the loop lists again instead of missing changes.
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.watch(wctx, first); err != errCompacted {
		t.Fatalf("watch from a compacted revision: %v, want errCompacted", err)
	}
}

// A malformed record is logged and counted once per version: listing again
// after etcd was away, or after starting from the disk cache, is not a new
// version.
func TestMalformedCountedOnceAcrossRelists(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "good", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx(t), "/st/peers/bad", "{"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx(t), EndpointKey("/st/", "zz"), `{"version":1,"endpoint":"nope"}`); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "st0.directory")
	var w watcher
	d := startCached(t, m, cache, &w, "good,")
	if st := d.State(); st.Malformed != 2 || st.MalformedTotal != 2 {
		t.Fatalf("after the first list: %+v, want 2 malformed, 2 in all", st)
	}

	m.Stop()
	waitRetrying(t, d, m)
	var w2 watcher
	d2 := startDir(t, m, cache, &w2) // from the disk cache: the malformed record counted there
	waitFor(t, 2*time.Second, "peers from the disk cache", func() bool { return w2.ids() == "good," })
	if st := d2.State(); st.MalformedTotal != 1 {
		t.Fatalf("from the disk cache: %+v, want 1 malformed in all", st)
	}
	m.Start(t)
	m.WaitReady(t, 20*time.Second)
	for _, x := range []struct {
		d    *Directory
		want uint64
	}{{d, 2}, {d2, 2}} {
		waitFor(t, 10*time.Second, "connected again", func() bool { return x.d.State().State == "connected" })
		if st := x.d.State(); st.Malformed != 2 || st.MalformedTotal != x.want {
			t.Errorf("after listing again: %+v, want 2 malformed, %d in all", st, x.want)
		}
	}
	// A malformed record of the disk cache that etcd no longer has does
	// not count as malformed now.
	// (A cache file of its own: d and d2 still save theirs to the first.)
	priv := handshake.PrivateKey{1, 2, 3} // startDir's
	snap := &snapshot{Prefix: "/st/", Revision: 1, Records: map[string][]byte{"bad": []byte("{"), "gone": []byte("[")}}
	cache3 := filepath.Join(t.TempDir(), "st3.directory")
	if err := saveCache(cache3, MemoryKey(&priv), snap); err != nil {
		t.Fatal(err)
	}
	var w3 watcher
	d3 := startDir(t, m, cache3, &w3)
	waitFor(t, 5*time.Second, "connected", func() bool { return d3.State().State == "connected" })
	if st := d3.State(); st.Malformed != 2 || st.MalformedTotal != 3 {
		t.Fatalf("started from a cache with a record since deleted: %+v, want 2 malformed, 3 in all", st)
	}
}

// etcd gone between the list and the watch's stream: the Watch call waits
// for a stream that cannot come up, and the health check must still end
// the watch (it did not: the directory reported "connected" until etcd was
// back).
func TestWatchEndsWhenEtcdGoesBeforeItsStream(t *testing.T) {
	m := etcdtest.Start(t)
	var w watcher
	d := startDir(t, m, "", &w)
	waitFor(t, 5*time.Second, "connected", func() bool { return d.State().State == "connected" })
	m.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.watch(ctx, d.State().Revision+1) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "health check") {
			t.Fatalf("watch with etcd gone: %v, want the health check's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch with etcd gone before its stream came up: still waiting after 10 s")
	}
}
