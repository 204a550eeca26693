package main

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/directory"
	"stunnel/handshake"
	"stunnel/internal/etcdtest"
	"stunnel/internal/waitfor"
	"stunnel/tunnel"
	"stunnel/tunnel/udpbind"
)

// attachTestConfig is a file config with no [[peer]]: every peer of the
// device comes from the directory.
func attachTestConfig() *conf.Config {
	k, _ := handshake.GeneratePrivateKey(nil)
	cfg := &conf.Config{Path: "a.conf", Interface: conf.Interface{Name: "atta", PeerID: "a", PrivateKey: k, PublicKey: k.PublicKey(),
		Addresses: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}, MTU: 1420}}
	cfg.Session = conf.Session{RekeyAfter: conf.DefaultRekeyAfter, RejectAfter: conf.DefaultRejectAfter,
		RekeyAfterMessages: conf.DefaultRekeyAfterMessages, ReplayWindow: conf.DefaultReplayWindow}
	return cfg
}

func attachTestPeer(id, ip string) conf.Peer {
	k, _ := handshake.GeneratePrivateKey(nil)
	return conf.Peer{ID: id, PublicKey: k.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix(ip)}}
}

func devicePeerIDs(d *tunnel.Device) []string {
	var ids []string
	for _, p := range d.Status().Peers {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

func newAttachTestDevice(t *testing.T, cfg *conf.Config) *tunnel.Device {
	t.Helper()
	d, err := tunnel.New(cfg, tunnel.Options{TUN: newChanTUN(), Bind: udpbind.New(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Records added and deleted in etcd while `up` builds the device (between
// initial and attach) reach the device when it attaches: a record deleted
// while the host was down (a revoked peer) must not stay authorised from
// the disk cache until some later change.
func TestDirectoryChangesDuringStartupReachDevice(t *testing.T) {
	m := etcdtest.Start(t)
	cli, err := directory.Dial([]string{m.ClientURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const prefix = "/attach/"
	for _, p := range []conf.Peer{attachTestPeer("x", "198.19.0.10/32"), attachTestPeer("z", "198.19.0.12/32")} {
		if err := directory.Put(ctx, cli, prefix, p); err != nil {
			t.Fatal(err)
		}
	}
	cfg := attachTestConfig()
	cfg.Directory = &conf.Directory{Endpoints: []string{m.ClientURL}, Prefix: prefix, CacheFile: t.TempDir() + "/a.directory"}
	ds, err := startDirectory(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	initial := ds.initial()
	if got := len(initial.Peers); got != 2 {
		t.Fatalf("initial config has %d peers, want x and z", got)
	}

	// While the device is built: y is added, z is revoked.
	if err := directory.Put(ctx, cli, prefix, attachTestPeer("y", "198.19.0.11/32")); err != nil {
		t.Fatal(err)
	}
	if err := directory.Delete(ctx, cli, prefix, "z"); err != nil {
		t.Fatal(err)
	}
	// Both changes have reached dirSync (through OnChange, with no device
	// to apply them to) before the device exists.
	waitfor.Cond(t, 10*time.Second, 10*time.Millisecond, "the directory's OnChange to deliver x and y", func() bool {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		return slices.Equal(peerIDs(ds.peers), []string{"x", "y"})
	})
	dev := newAttachTestDevice(t, initial)
	defer dev.Close()
	if got := devicePeerIDs(dev); !slices.Equal(got, []string{"x", "z"}) {
		t.Fatalf("device built with %v, want the initial x and z", got)
	}
	ds.attach(dev, nil)
	// attach catches up before it returns: no later change will come to
	// correct it.
	if got := devicePeerIDs(dev); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("after attach the device has peers %v, want [x y]: changes made during start-up were lost", got)
	}
	if got := ds.status().Applied; got != 2 {
		t.Fatalf("status reports %d directory peers in use, want 2", got)
	}
}

func peerIDs(ps []conf.Peer) []string {
	ids := make([]string, 0, len(ps))
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

// racingDirectory stands in for the directory to force one order of
// events: the directory changes (to next) just after attach could read it,
// and the notifier delivers the new list before attach applies what it
// read. Its pending delivery is what the real notifier would still owe.
type racingDirectory struct {
	mu      sync.Mutex
	cur     []conf.Peer
	next    []conf.Peer // the list the directory moves to once read, if armed
	armed   bool
	pending bool // a change not yet delivered through OnChange
	ds      *dirSync
}

func (r *racingDirectory) Peers() []conf.Peer {
	r.mu.Lock()
	out := slices.Clone(r.cur)
	fire := r.armed
	if fire {
		r.armed, r.cur, r.pending = false, r.next, true
	}
	r.mu.Unlock()
	// The notifier can deliver first only if the reader does not hold
	// dirSync's lock; if it does, the delivery waits (it stays pending)
	// rather than deadlock the test.
	if fire && r.ds.mu.TryLock() {
		r.ds.mu.Unlock()
		r.deliver()
	}
	return out
}

// deliver is the notifier's OnChange call, if one is due.
func (r *racingDirectory) deliver() {
	r.mu.Lock()
	due, list := r.pending, slices.Clone(r.cur)
	r.pending = false
	r.mu.Unlock()
	if due {
		r.ds.onChange(list)
	}
}

func (r *racingDirectory) State() directory.State { return directory.State{} }
func (r *racingDirectory) Close() error           { return nil }

// A change the notifier applies while attach catches up must not be undone
// by attach applying an older list it read before: the device ends with
// the directory's newest list, whatever the interleaving.
func TestDirectoryAttachNeverAppliesAnOlderList(t *testing.T) {
	x, y, z := attachTestPeer("x", "198.19.0.10/32"), attachTestPeer("y", "198.19.0.11/32"), attachTestPeer("z", "198.19.0.12/32")
	rd := &racingDirectory{cur: []conf.Peer{x}}
	ds := &dirSync{dir: rd, log: slog.New(slog.DiscardHandler), file: attachTestConfig(), reported: map[string]bool{}}
	rd.ds = ds
	initial := ds.initial()
	dev := newAttachTestDevice(t, initial)
	defer dev.Close()

	// During start-up the directory moved to x+y (not delivered yet), and
	// moves on to x+z as soon as anything reads it.
	rd.mu.Lock()
	rd.cur, rd.pending = []conf.Peer{x, y}, true
	rd.next, rd.armed = []conf.Peer{x, z}, true
	rd.mu.Unlock()
	ds.attach(dev, nil)
	rd.deliver() // what the notifier still owes, as it would run it
	rd.mu.Lock()
	want := peerIDs(rd.cur) // [x z] if attach read the directory, else [x y]
	rd.mu.Unlock()
	if got := devicePeerIDs(dev); !slices.Equal(got, want) {
		t.Fatalf("device has peers %v, want the directory's newest %v", got, want)
	}

	// And the plain order: a change delivered after attach applies.
	rd.mu.Lock()
	rd.cur, rd.pending = []conf.Peer{y}, true
	rd.mu.Unlock()
	rd.deliver()
	if got := devicePeerIDs(dev); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("device has peers %v after a change following attach, want [y]", got)
	}
}
