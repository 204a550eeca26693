package main

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/tunnel"
	"stunnel/tunnel/udpbind"
)

// A record clashing with the file is reported once, with the file's line,
// not on every directory update; it is reported again if it goes away and
// comes back.
func TestDirectoryConflictsReportedOnce(t *testing.T) {
	var logs bytes.Buffer
	k := func() handshake.PublicKey { p, _ := handshake.GeneratePrivateKey(nil); return p.PublicKey() }
	own, _ := handshake.GeneratePrivateKey(nil)
	file := &conf.Config{Path: "/etc/stunnel/st0.toml",
		Interface: conf.Interface{PeerID: "a", PublicKey: own.PublicKey(), Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}},
		Peers:     []conf.Peer{{ID: "b", PublicKey: k(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/32")}, Line: 12}}}
	s := &dirSync{log: slog.New(slog.NewTextHandler(&logs, nil)), file: file, reported: map[string]bool{}}
	dup := conf.Peer{ID: "b", PublicKey: k(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.9/32")}}
	c := conf.Peer{ID: "c", PublicKey: k(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.3/32")}}
	self := conf.Peer{ID: "a", PublicKey: own.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/32")}}

	for range 3 {
		s.peers = []conf.Peer{self, dup, c}
		m := s.mergeLocked(file)
		if len(m.Peers) != 2 || m.Peers[1].ID != "c" || s.applied != 1 {
			t.Fatalf("merged %+v, applied %d", m.Peers, s.applied)
		}
	}
	if n := strings.Count(logs.String(), "st0.toml:12: peer id"); n != 1 {
		t.Fatalf("conflict logged %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), `"a"`) {
		t.Fatalf("this host's own record was reported:\n%s", logs.String())
	}
	s.peers = []conf.Peer{c}
	s.mergeLocked(file)
	s.peers = []conf.Peer{dup, c}
	s.mergeLocked(file)
	if n := strings.Count(logs.String(), "st0.toml:12: peer id"); n != 2 {
		t.Fatalf("a conflict that came back logged %d times in all, want 2", n)
	}
}

func TestShowDirectoryLine(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	writeStatus(&b, &tunnel.Status{Name: "st0", Directory: &tunnel.DirectoryStatus{State: "retrying", Source: "cache",
		Revision: 42, LastSync: now.Add(-30 * time.Second), Peers: 7, Applied: 6, Malformed: 1, LastError: "listing: context deadline exceeded"}}, now)
	out := b.String()
	for _, want := range []string{"directory: retrying (from cache), revision 42, last sync 30 seconds ago, 7 records, 6 in use, 1 malformed",
		"directory error: listing: context deadline exceeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeStatus(&b, &tunnel.Status{Name: "st0"}, now)
	if strings.Contains(b.String(), "directory") {
		t.Errorf("show without a directory mentions one:\n%s", b.String())
	}
}

// A [[peer]] with its record's ID and key, as the docs tell an operator to
// write for an exit through a fleet host, is no conflict: one Info line
// naming the peer and the file's line, again only if the record goes away
// and comes back, and show counts the record in use. With another key the
// record is still not used, logged as an error saying why.
func TestDirectoryOverrideLoggedOnceAtInfo(t *testing.T) {
	var logs bytes.Buffer
	own, _ := handshake.GeneratePrivateKey(nil)
	kb, _ := handshake.GeneratePrivateKey(nil)
	file := &conf.Config{Path: "/etc/stunnel/st0.toml",
		Interface: conf.Interface{PeerID: "a", PublicKey: own.PublicKey(), Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}},
		Peers:     []conf.Peer{{ID: "b", PublicKey: kb.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, Line: 12}}}
	s := &dirSync{dir: &fixedDir{}, log: slog.New(slog.NewTextHandler(&logs, nil)), file: file, reported: map[string]bool{}}
	rec := conf.Peer{ID: "b", PublicKey: kb.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/32")}}
	c := attachTestPeer("c", "fd00:77::3/128") // an IPv4 prefix would overlap b's 0.0.0.0/0
	const override = `the file's [[peer]] is used in place of the directory record`
	count := func() int { return strings.Count(logs.String(), "st0.toml:12: peer id") }

	for range 3 {
		s.peers = []conf.Peer{rec, c}
		m := s.mergeLocked(file)
		if len(m.Peers) != 2 || m.Peers[0].ID != "b" || m.Peers[1].ID != "c" {
			t.Fatalf("merged %+v, want the file's b and record c", m.Peers)
		}
	}
	unlock := s.lock()
	_, err := s.applyMergedLocked(file, func(*conf.Config) error { return nil }) // a reload's path
	unlock()
	if err != nil || s.status().Applied != 2 {
		t.Fatalf("applied %d (err %v), want 2: c, and b's record, which the [[peer]] stands in for", s.status().Applied, err)
	}
	line := logs.String()
	if count() != 1 || !strings.Contains(line, "level=INFO") || !strings.Contains(line, override) || strings.Count(line, "\n") != 1 ||
		strings.Contains(line, kb.PublicKey().String()) {
		t.Fatalf("want one Info line naming st0.toml:12, peer b and the override, no key:\n%s", line)
	}
	s.peers = []conf.Peer{c}
	s.mergeLocked(file)
	s.peers = []conf.Peer{rec, c}
	s.mergeLocked(file)
	if n := count(); n != 2 {
		t.Fatalf("an override that came back logged %d times in all, want 2:\n%s", n, logs.String())
	}

	logs.Reset()
	other := rec
	other.PublicKey = attachTestPeer("x", "10.77.0.9/32").PublicKey
	s.peers = []conf.Peer{other, c}
	s.mergeLocked(file)
	if line := logs.String(); count() != 1 || !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "record not used") ||
		!strings.Contains(line, "with another public key") || s.applied != 1 {
		t.Fatalf("record b with another key: applied %d, want 1 and one Error saying the keys differ:\n%s", s.applied, line)
	}
}

// lockedBuffer is a log destination that the device's goroutines and the
// test may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A directory list the device already runs (a relist that found nothing
// new, a burst that came back to where it started) reloads nothing and
// logs nothing; every such list used to reload the device, which logs
// each time. A list that changes something applies it.
func TestDirectoryUnchangedListAppliesNothing(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	x, y := attachTestPeer("x", "198.19.0.10/32"), attachTestPeer("y", "198.19.0.11/32")
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{x}}, log: log, file: attachTestConfig(), reported: map[string]bool{}}
	initial := ds.initial()
	dev, err := tunnel.New(initial, tunnel.Options{TUN: newChanTUN(), Bind: udpbind.New(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ds.attach(dev, nil)
	const reloaded = "configuration reloaded"

	ds.onChange([]conf.Peer{x}) // what the device was built with
	if strings.Contains(logs.String(), reloaded) || strings.Contains(logs.String(), "directory:") {
		t.Fatalf("an unchanged directory list reloaded the device or logged:\n%s", logs.String())
	}
	ds.onChange([]conf.Peer{x, y})
	if got := devicePeerIDs(dev); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("device peers %v after y was added, want [x y]", got)
	}
	if n := strings.Count(logs.String(), reloaded); n != 1 {
		t.Fatalf("%d reloads logged after one change, want 1:\n%s", n, logs.String())
	}
	ds.onChange([]conf.Peer{x, y})
	if n := strings.Count(logs.String(), reloaded); n != 1 {
		t.Fatalf("%d reloads logged after one change and one unchanged list, want 1:\n%s", n, logs.String())
	}
}
