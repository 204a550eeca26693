package directory

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/etcdtest"
)

// pending drains c and says whether a signal was waiting in it.
func pending(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func recordKV(t *testing.T, id string, n int, modRev int64) keyValue {
	t.Helper()
	b, err := EncodeRecord(testPeer(t, id, n))
	if err != nil {
		t.Fatal(err)
	}
	return keyValue{key: PeerKey("/st/", id), value: b, modRev: modRev}
}

// A relist (after a compaction, or after etcd was away) that finds the
// records the copy holds asks for no OnChange and no disk cache write and
// logs nothing at info level: every such relist used to reload the device
// and log. One that finds a change passes it on.
func TestRelistPassesOnOnlyChanges(t *testing.T) {
	var logs bytes.Buffer
	d := newDirectory(Options{Prefix: "/st/", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	b := recordKV(t, "b", 2, 3)
	bad := keyValue{key: PeerKey("/st/", "bad"), value: []byte("{"), modRev: 4}
	ep := keyValue{key: EndpointKey("/st/", "b"), value: []byte(`{"version":1,"endpoint":"198.18.0.2:51820"}`), modRev: 5}

	d.replace(5, []keyValue{b, bad, ep})
	if !pending(d.kick) || !pending(d.save) || !bytes.Contains(logs.Bytes(), []byte("synced with etcd")) {
		t.Fatalf("first list: want OnChange and a cache write due and the sync logged; log:\n%s", logs.String())
	}

	logs.Reset()
	d.replace(9, []keyValue{b, bad, ep}) // a compaction's relist: same records
	if kick, save := pending(d.kick), pending(d.save); kick || save || logs.Len() != 0 {
		t.Fatalf("relist with no change: OnChange due %v, cache write due %v, log:\n%s", kick, save, logs.String())
	}
	if st := d.State(); st.Revision != 9 || st.Peers != 1 || st.Malformed != 1 {
		t.Fatalf("state after the relist %+v, want revision 9, 1 peer, 1 malformed", st)
	}

	c := recordKV(t, "c", 3, 10)
	d.replace(10, []keyValue{b, bad, ep, c}) // c was put while the watch was down
	if !pending(d.kick) || !pending(d.save) || !bytes.Contains(logs.Bytes(), []byte("changed=true")) {
		t.Fatalf("relist that adds c: want OnChange and a cache write due and the change logged; log:\n%s", logs.String())
	}
	if ps := d.Peers(); len(ps) != 2 || ps[1].ID != "c" || ps[0].Endpoint != "198.18.0.2:51820" {
		t.Fatalf("peers after the relist %+v, want b (with its published endpoint) and c", ps)
	}

	// A published endpoint alone is a change too.
	ep2 := ep
	ep2.value = []byte(`{"version":1,"endpoint":"198.18.0.3:51820"}`)
	d.replace(11, []keyValue{b, bad, ep2, c})
	if !pending(d.kick) {
		t.Fatal("relist with b's published endpoint moved: no OnChange due")
	}
	// A malformed record's bytes only change the disk cache.
	bad2 := bad
	bad2.value = []byte("[")
	d.replace(12, []keyValue{b, bad2, ep2, c})
	if pending(d.kick) || !pending(d.save) {
		t.Fatal("relist with a malformed record changed: want a cache write due and no OnChange")
	}

	// The list that ends an outage says so once, though nothing changed.
	d.setState("retrying", "etcd gone")
	logs.Reset()
	d.replace(13, []keyValue{b, bad2, ep2, c})
	if kick := pending(d.kick); kick || !bytes.Contains(logs.Bytes(), []byte("synced with etcd")) {
		t.Fatalf("relist after an outage: OnChange due %v, want none and the sync logged; log:\n%s", kick, logs.String())
	}
}

// With a real etcd: a relist after etcd was away and back calls OnChange
// only for what changed.
func TestRelistAfterEtcdBackCallsNoOnChange(t *testing.T) {
	m := etcdtest.Start(t)
	if err := Put(ctx(t), client(t, m), "/st/", testPeer(t, "b", 2)); err != nil {
		t.Fatal(err)
	}
	var w watcher
	d := startCached(t, m, filepath.Join(t.TempDir(), "st0.directory"), &w, "b,")
	w.mu.Lock()
	before := w.calls
	w.mu.Unlock()

	m.Stop()
	waitRetrying(t, d, m)
	m.Start(t)
	m.WaitReady(t, 20*time.Second)
	waitFor(t, 10*time.Second, "connected again", func() bool { return d.State().State == "connected" })
	// c's put is the only change since the first list: one call for it.
	if err := Put(ctx(t), client(t, m), "/st/", testPeer(t, "c", 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "c added", func() bool { return w.ids() == "b,c," })
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.calls != before+1 {
		t.Fatalf("%d OnChange calls after etcd came back and c was put, want 1 (for c)", w.calls-before)
	}
}

// A disk cache write that failed (a full disk, a token that was reset)
// is made again by the next relist, though the relist finds nothing new:
// else the file keeps the directory as it was before the failed write
// (a revoked record included), and a start without etcd would use it
// until some record changed.
func TestRelistRewritesCacheAfterFailedWrite(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "full")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(blocker, "st0.directory") // its directory is a file: the write fails
	priv := handshake.PrivateKey{8, 3}
	var logs bytes.Buffer
	d := newDirectory(Options{Prefix: "/st/", CacheFile: cache, Key: MemoryKey(&priv),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	b := recordKV(t, "b", 2, 3)

	d.replace(5, []keyValue{b})
	if !pending(d.save) {
		t.Fatal("first list: no cache write due")
	}
	d.saveDiskCache()
	if !strings.Contains(logs.String(), "cannot save the disk cache") {
		t.Fatalf("the failed write was not logged:\n%s", logs.String())
	}

	if err := os.Remove(blocker); err != nil { // the disk has room again
		t.Fatal(err)
	}
	d.replace(9, []keyValue{b}) // etcd came back: nothing new
	if !pending(d.save) {
		t.Fatal("relist after a failed cache write: no cache write due, the file stays as it was")
	}
	d.saveDiskCache()
	snap, err := loadCache(cache, MemoryKey(&priv), "/st/")
	if err != nil || snap.Revision != 9 || len(snap.Records) != 1 {
		t.Fatalf("cache after the relist: %+v, %v; want revision 9 with b", snap, err)
	}

	d.replace(12, []keyValue{b}) // written since: the next relist has nothing to do
	if pending(d.save) {
		t.Fatal("relist with nothing new after a good write: a cache write due")
	}
}
