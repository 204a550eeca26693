package directory

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/conf"
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

// worstCaseSnapshot is n records of MaxRecordSize bytes, every ID of
// conf.MaxPeerIDLen bytes that JSON escapes at six bytes each: the
// largest cache n records make. IDs are of characters JSON writes as
// \u00XX (distinct after a round trip, unlike bytes of invalid UTF-8):
// three as digits, then padding. The records share one value.
func worstCaseSnapshot(t *testing.T, n int) (*snapshot, []byte) {
	t.Helper()
	var alphabet []byte
	for c := byte(1); c < 0x20; c++ {
		if !strings.ContainsRune("\b\t\n\f\r", rune(c)) { // these have short escapes
			alphabet = append(alphabet, c)
		}
	}
	alphabet = append(alphabet, '<', '>', '&')
	value := bytes.Repeat([]byte{0xa5}, MaxRecordSize)
	snap := &snapshot{Prefix: "/st/", Revision: 1 << 40, Records: make(map[string][]byte, n)}
	for i := range n {
		a := len(alphabet)
		id := string([]byte{alphabet[i%a], alphabet[i/a%a], alphabet[i/a/a%a]}) + strings.Repeat("<", conf.MaxPeerIDLen-3)
		snap.Records[id] = value
	}
	if len(snap.Records) != n {
		t.Fatalf("made %d distinct IDs, want %d", len(snap.Records), n)
	}
	return snap, value
}

// The cache of the largest directory documented, MaxRecords records of
// MaxRecordSize bytes with the IDs that encode largest, is written and
// read back whole: the bound was 64 MiB, under 10,000 such records, so
// their cache was written at every change and refused at start. Under
// -race (minutes for 200 MiB of JSON) or -short, 250 records are
// written and read back, and the size of MaxRecords is extrapolated from
// theirs: each such record adds the same bytes. A file past the bound is
// refused.
func TestDiskCacheOfTheLargestDirectory(t *testing.T) {
	n := MaxRecords
	if raceEnabled || testing.Short() {
		n = 250
	}
	priv := handshake.PrivateKey{8, 1}
	sealedSize := func(snap *snapshot, path string) int64 {
		t.Helper()
		if err := saveCache(path, MemoryKey(&priv), snap); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	empty := sealedSize(&snapshot{Prefix: "/st/", Revision: 1 << 40, Records: map[string][]byte{}}, filepath.Join(t.TempDir(), "empty"))
	snap, value := worstCaseSnapshot(t, n)
	path := filepath.Join(t.TempDir(), "c")
	size := sealedSize(snap, path)
	got, err := loadCache(path, MemoryKey(&priv), "/st/")
	if err != nil {
		t.Fatalf("the cache of %d records of %d bytes (%d bytes sealed) did not load: %v", n, MaxRecordSize, size, err)
	}
	if len(got.Records) != n || got.Revision != snap.Revision {
		t.Fatalf("loaded %d records at revision %d, want %d at %d", len(got.Records), got.Revision, n, snap.Revision)
	}
	for id, b := range got.Records {
		if !bytes.Equal(b, value) || snap.Records[id] == nil {
			t.Fatalf("record %q did not come back as written", id)
		}
	}
	// n records add n times one record's bytes, and a comma between two.
	perRecord := (size - empty + 1) / int64(n)
	largest := empty + int64(MaxRecords)*perRecord - 1
	if largest > int64(cacheLimit("/st/")) {
		t.Fatalf("the cache of %d records of %d bytes takes %d bytes (%d each), more than the %d read back",
			MaxRecords, MaxRecordSize, largest, perRecord, cacheLimit("/st/"))
	}
	t.Logf("%d records: %d bytes sealed; %d records: %d bytes; bound %d", n, size, MaxRecords, largest, cacheLimit("/st/"))

	key, err := cacheKey(MemoryKey(&priv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openCache(make([]byte, cacheLimit("/st/")+1), key, "/st/"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("a file past the bound: %v, want it refused as too large", err)
	}
}
