package directory

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/handshake"
	"stunnel/internal/etcdtest"
	"stunnel/internal/fsdir/fsdirtest"
)

func TestDiskCacheSealed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c")
	priv, other := handshake.PrivateKey{8, 1}, handshake.PrivateKey{8, 2}
	snap := &snapshot{Prefix: "/st/", Revision: 7, Records: map[string][]byte{"b": []byte(`{"version":1}`)}}
	if err := saveCache(path, MemoryKey(&priv), snap); err != nil {
		t.Fatal(err)
	}
	got, err := loadCache(path, MemoryKey(&priv), "/st/")
	if err != nil || got.Revision != 7 || string(got.Records["b"]) != `{"version":1}` {
		t.Fatalf("load: %+v %v", got, err)
	}
	if _, err := loadCache(path, MemoryKey(&other), "/st/"); err == nil {
		t.Fatal("another host's key opened the cache")
	}
	if _, err := loadCache(path, MemoryKey(&priv), "/other/"); err == nil {
		t.Fatal("a cache for another prefix was used")
	}
	data, _ := os.ReadFile(path)
	if bytes.Contains(data, []byte("version")) {
		t.Fatal("cache file holds plaintext")
	}
	data[len(data)-1] ^= 1
	os.WriteFile(path, data, 0o600)
	if _, err := loadCache(path, MemoryKey(&priv), "/st/"); err == nil {
		t.Fatal("a damaged cache opened")
	}
}

// TestDiskCacheFailedWriteKeepsOld: a cache write that fails part way (a
// full disk) is reported, and the cache from before stays readable; the
// half-written file used to be renamed over it.
func TestDiskCacheFailedWriteKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c")
	priv := handshake.PrivateKey{8, 1}
	old := &snapshot{Prefix: "/st/", Revision: 7, Records: map[string][]byte{"b": []byte(`{"version":1}`)}}
	if err := saveCache(path, MemoryKey(&priv), old); err != nil {
		t.Fatal(err)
	}
	big := &snapshot{Prefix: "/st/", Revision: 8, Records: map[string][]byte{"b": bytes.Repeat([]byte("x"), 8192)}}
	fsdirtest.LimitFileSize(t, 1024)
	err := saveCache(path, MemoryKey(&priv), big)
	if err == nil || !strings.Contains(err.Error(), "directory cache "+path) {
		t.Fatalf("saveCache past the file size limit: %v, want an error naming the cache", err)
	}
	got, err := loadCache(path, MemoryKey(&priv), "/st/")
	if err != nil || got.Revision != 7 {
		t.Fatalf("after a failed save the cache loads as %+v, %v; want revision 7", got, err)
	}
}

// A record over MaxRecordSize, or with an ID over conf.MaxPeerIDLen, is
// malformed whatever it holds: it is counted, but it is neither kept nor
// sealed into the disk cache,
// which every change rewrites (a few of etcd's largest values would make
// the cache too large to load at a start without etcd).
func TestHugeRecordNotCached(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "good", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx(t), "/st/peers/huge", strings.Repeat(" ", 1<<20)); err != nil {
		t.Fatal(err)
	}
	good, _ := EncodeRecord(testPeer(t, "x", 2))
	longID := strings.Repeat("h", 1<<20)
	if _, err := cli.Put(ctx(t), "/st/peers/"+longID, string(good)); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "st0.directory")
	var w watcher
	d := startCached(t, m, cache, &w, "good,")
	if st := d.State(); st.Malformed != 2 || st.MalformedTotal != 2 {
		t.Fatalf("state %+v, want the huge record and the huge ID malformed", st)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Size() > 4*MaxRecordSize {
		t.Fatalf("disk cache: %v, %d bytes for one small record and two malformed", err, fi.Size())
	}
	d.mu.Lock()
	_, kept := d.raw["huge"]
	_, keptID := d.raw[longID]
	d.mu.Unlock()
	if kept || keptID {
		t.Fatalf("kept: the huge record %v, the huge ID's %v", kept, keptID)
	}
}
