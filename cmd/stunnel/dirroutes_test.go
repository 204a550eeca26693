package main

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"stunnel/conf"
	"stunnel/directory"
	"stunnel/handshake"
	"stunnel/internal/netns"
)

// fixedDir is a directory whose records the test sets (dirSource).
type fixedDir struct{ peers []conf.Peer }

func (f *fixedDir) Peers() []conf.Peer     { return slices.Clone(f.peers) }
func (f *fixedDir) State() directory.State { return directory.State{} }
func (f *fixedDir) Close() error           { return nil }

// A directory record whose route the kernel refuses (another interface
// routes its subnet) is left out and reported, and everything else still
// applies: a later revocation of another record, and a SIGHUP reload that
// removes a file peer. Applying peers and routes all or nothing must not
// let one such record freeze the peer set.
func TestDirectoryRecordWithRefusedRouteIsLeftOut(t *testing.T) {
	ns := routeClashNetns(t, "strv", "rvk0")
	head, peerB, _, write := clashConfig(t, "rvk0", `"198.19.0.1/24"`)
	kq := mustGenKey(t)
	peerQ := "[[peer]]\nid = \"q\"\npublic_key = \"" + kq.PublicKey().String() + "\"\nallowed_ips = [\"198.19.6.0/24\"]\n"
	path := write(head + peerB(`"198.19.5.0/24"`) + peerQ)
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	z := attachTestPeer("z", "198.19.8.0/24")
	x := attachTestPeer("x", "198.19.7.0/24") // other0 routes it
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{z}}, log: log, file: cfg, reported: map[string]bool{}}
	initial := ds.initial()
	d, bind, link := clashDevice(t, ns, "rvk0", initial, log)
	_, in := inNetns(t, ns)
	ds.attach(d, link)
	want := func(stage string, ids ...string) {
		t.Helper()
		if got := devicePeerIDs(d); !slices.Equal(got, ids) {
			t.Errorf("%s: device peers %v, want %v\nlog:\n%s", stage, got, ids, logs.String())
		}
	}
	routedHere := func(prefix string) bool {
		t.Helper()
		out, err := netns.Run(ns, "ip", "-4", "route", "show", prefix)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(out, "dev rvk0")
	}
	want("start", "b", "q", "z")

	in(func() error { ds.onChange([]conf.Peer{z, x}); return nil })
	want("x added, its route refused", "b", "q", "z")
	if n := strings.Count(logs.String(), `directory peer \"x\": rvk0: adding route 198.19.7.0/24`); n != 1 {
		t.Errorf("x's refused route reported %d times, want once\nlog:\n%s", n, logs.String())
	}
	if routedHere("198.19.7.0/24") {
		t.Error("198.19.7.0/24 routed into rvk0 although other0 has it")
	}

	in(func() error { ds.onChange([]conf.Peer{x}); return nil }) // z revoked
	want("z revoked", "b", "q")
	if routedHere("198.19.8.0/24") {
		t.Error("revoked z's route 198.19.8.0/24 is still on rvk0")
	}

	// An operator drops file peer q and sends SIGHUP.
	write(head + peerB(`"198.19.5.0/24"`))
	var rerr error
	in(func() error {
		_, rerr = reload(cfg, d, link, bind, &endpointResolver{}, log, new(slog.LevelVar), ds)
		return nil
	})
	if rerr != nil {
		t.Errorf("reload that removes file peer q: %v", rerr)
	}
	want("q removed by reload", "b")
	if n := strings.Count(logs.String(), `directory peer \"x\"`); n != 1 {
		t.Errorf("x reported %d times over the reload, want once (no repeat while unchanged)\nlog:\n%s", n, logs.String())
	}
}

func mustGenKey(t *testing.T) handshake.PrivateKey {
	t.Helper()
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
