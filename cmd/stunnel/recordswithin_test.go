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

// A reload that drops [directory] (or changes its etcd_endpoints) leaves the
// watcher running on the [directory] it started with until a restart, so
// the records are still checked against that one: removing the table must
// not lift records_within, and a record may not capture the way to the
// etcd the watcher still talks to.
func TestRecordsCheckedAgainstTheRunningDirectory(t *testing.T) {
	var logs bytes.Buffer
	file := attachTestConfig()
	file.Directory = &conf.Directory{Endpoints: []string{"https://198.18.0.10:2379"}, Prefix: "/t/", Line: 9,
		RecordsWithin: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}}
	inside := attachTestPeer("in", "198.19.0.2/32")
	outside := attachTestPeer("out", "0.0.0.0/1")
	toEtcd := attachTestPeer("toetcd", "198.18.0.0/24")
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{inside, outside, toEtcd}}, log: slog.New(slog.NewTextHandler(&logs, nil)), file: file, reported: map[string]bool{}}
	d := newAttachTestDevice(t, ds.initial())
	t.Cleanup(func() { d.Close() })
	ds.attach(d, nil)
	if got := devicePeerIDs(d); !slices.Equal(got, []string{"in"}) {
		t.Fatalf("at start: device peers %v, want in only", got)
	}

	reload := func(next *conf.Config) {
		t.Helper()
		unlock := ds.lock()
		defer unlock()
		if _, err := ds.applyMergedLocked(next, func(cfg *conf.Config) error { return applyPeers(d, nil, cfg, ds.log) }); err != nil {
			t.Fatal(err)
		}
		ds.fileAppliedLocked(next)
	}
	// etcd moved in the file (applies at the restart); records_within
	// widened, which applies now.
	moved := *file
	dir := *file.Directory
	dir.Endpoints = []string{"https://203.0.113.10:2379"}
	dir.RecordsWithin = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	moved.Directory = &dir
	reload(&moved)
	if got := devicePeerIDs(d); !slices.Equal(got, []string{"in"}) {
		t.Errorf("after a reload moving etcd_endpoints: device peers %v, want in only (toetcd holds the running etcd)", got)
	}

	dropped := moved // a copy of the file in use: the reload zeroed the one it replaced
	dropped.Directory = nil
	reload(&dropped)
	if got := devicePeerIDs(d); !slices.Equal(got, []string{"in"}) {
		t.Errorf("after a reload dropping [directory]: device peers %v, want in only", got)
	}
	if !strings.Contains(logs.String(), "[directory] was removed") {
		t.Errorf("the removal was not said to wait for a restart:\n%s", logs.String())
	}
}
