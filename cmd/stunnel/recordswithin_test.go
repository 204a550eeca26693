package main

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"stunnel/conf"
)

// records_within applies at a reload, without a restart: the merge reads it
// from the file each time, so a record outside it leaves the device (logged
// once as not used), and the reload does not claim the change waits for a
// restart, as changes to the watcher's settings do.
func TestRecordsWithinAppliesAtReload(t *testing.T) {
	var logs bytes.Buffer
	file := attachTestConfig()
	file.Directory = &conf.Directory{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/t/", Line: 9}
	inside, outside := attachTestPeer("in", "198.19.0.2/32"), attachTestPeer("out", "0.0.0.0/1")
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{inside, outside}}, log: slog.New(slog.NewTextHandler(&logs, nil)), file: file, reported: map[string]bool{}}
	d := newAttachTestDevice(t, ds.initial())
	t.Cleanup(func() { d.Close() })
	ds.attach(d, nil)
	if got := devicePeerIDs(d); !slices.Equal(got, []string{"in", "out"}) {
		t.Fatalf("without records_within: device peers %v, want in and out", got)
	}

	next := *file
	dir := *file.Directory
	dir.RecordsWithin = []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}
	dir.Line = 12 // an edit above [directory] moved it
	next.Directory = &dir
	unlock := ds.lock()
	if _, err := ds.applyMergedLocked(&next, func(cfg *conf.Config) error { return applyPeers(d, nil, cfg, ds.log) }); err != nil {
		unlock()
		t.Fatal(err)
	}
	ds.fileAppliedLocked(&next)
	unlock()
	if got := devicePeerIDs(d); !slices.Equal(got, []string{"in"}) {
		t.Errorf("after a reload adding records_within: device peers %v, want in only", got)
	}
	if !strings.Contains(logs.String(), `directory peer \"out\": allowed_ips 0.0.0.0/1 is not inside records_within`) {
		t.Errorf("record out not logged as not used:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "next restart") {
		t.Errorf("a records_within change was said to wait for a restart:\n%s", logs.String())
	}

	third, moved := next, dir
	moved.Prefix = "/t2/"
	third.Directory = &moved
	unlock = ds.lock()
	ds.fileAppliedLocked(&third)
	unlock()
	if !strings.Contains(logs.String(), "take effect at the next restart") {
		t.Errorf("a prefix change was not said to wait for a restart:\n%s", logs.String())
	}
}
