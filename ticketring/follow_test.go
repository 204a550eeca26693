package ticketring

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/handshake"
	"stunnel/internal/etcdtest"
	"stunnel/internal/fakeclock"
	"stunnel/tickets"
)

// Records sealed under another group secret, moved to another name, or
// tampered with are refused, counted and left alone; the rotator adds its
// own key since none of them counts.
func TestForeignRecordsRefused(t *testing.T) {
	m := etcdtest.Start(t)
	cli := dial(t, m)
	clk := fakeclock.New(t0)
	k, err := tickets.GenerateKey(nil, t0, ed, do)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := tickets.SealRecord(secret(t, 9), prefix, &k, nil)
	putRecord(t, cli, k.NameHex(), foreign)
	good, _ := tickets.SealRecord(secret(t, 1), prefix, &k, nil)
	putRecord(t, cli, "00112233445566778899aabbccddeeff", good) // a genuine record under another name
	tampered := bytes.Clone(good)
	tampered[50] ^= 1
	k2, _ := tickets.GenerateKey(nil, t0, ed, do)
	putRecord(t, cli, k2.NameHex(), tampered)
	putRecord(t, cli, "not-a-name", good)
	k3, _ := tickets.GenerateKey(nil, t0, ed, do)
	otherPrefix, _ := tickets.SealRecord(secret(t, 1), "/other/", &k3, nil) // another group's prefix
	putRecord(t, cli, k3.NameHex(), otherPrefix)

	g := startGateway(t, m, clk, "gw-1", 1)
	waitFor(t, 10*time.Second, "the rotator", func() bool { return g.role() == "rotator" })
	ks := g.holds(t, 1)
	if ks[0].Name == k.NameHex() || ks[0].Name == k2.NameHex() || ks[0].Name == k3.NameHex() {
		t.Fatalf("the ring took a refused record: %+v", ks)
	}
	st := g.s.Status()
	if st.Refused != 5 || st.RefusedTotal != 5 || st.Keys != 1 {
		t.Fatalf("status %+v: want 5 refused, 1 key", st)
	}
	if n := records(t, cli); n != 6 {
		t.Fatalf("%d records, want the 5 refused ones left alone and 1 added", n)
	}
	// A second change does not count the same refused records again.
	clk.Advance(ed / 2)
	g.looked(t, clk.Now())
	g.holds(t, 2)
	if st := g.s.Status(); st.RefusedTotal != 5 {
		t.Fatalf("refused counted again: %+v", st)
	}
	// A refused key's tickets do not open.
	ring := tickets.NewRing(tickets.Options{Now: clk.Now})
	ring.SetExternalKeys([]tickets.Key{k})
	tk, err := ring.Seal(ticketState(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.ring.OpenTicket(tk); !errors.Is(err, handshake.ErrTicketKeyUnknown) {
		t.Fatalf("ticket under a foreign record's key: %v, want unknown key", err)
	}
}

// A record is at its key's name as written (lower-case hex, as show and
// NameHex print it): a copy at the same name in capitals is another etcd
// key, so deleting the record at the name show gives must still retire the
// key everywhere, and the copy is refused like a record moved elsewhere.
func TestRecordNameSpelledOneWay(t *testing.T) {
	m := etcdtest.Start(t)
	cli := dial(t, m)
	clk := fakeclock.New(t0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := tickets.GenerateKey(nil, t0, ed, do)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := tickets.SealRecord(secret(t, 1), prefix, &k, nil)
	for _, name := range []string{k.NameHex(), strings.ToUpper(k.NameHex())} {
		putRecord(t, cli, name, rec)
	}
	g := startGateway(t, m, clk, "gw-1", 1)
	waitFor(t, 10*time.Second, "the rotator", func() bool { return g.role() == "rotator" })
	g.looked(t, clk.Now())
	if st := g.s.Status(); st.Keys != 1 || st.Refused != 1 || len(g.ring.Keys()) != 1 {
		t.Fatalf("status %+v, ring %+v: want the record at its name held, the capitalised copy refused", st, g.ring.Keys())
	}
	if _, err := cli.Delete(ctx, prefix+"tickets/"+k.NameHex()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the deleted key retired", func() bool {
		return !slices.ContainsFunc(g.ring.Keys(), func(i tickets.KeyInfo) bool { return i.Name == k.NameHex() })
	})
}

// etcd gone between the list and the watch: the Watch call waits for a
// stream that cannot come up, and the health check must still run beside
// it, so the status the daemon shows leaves "connected" within two health
// intervals (it did not: the follower showed "connected" until etcd came
// back). stopAtWatch stops etcd as the follower's watch begins.
func TestStatusLeavesConnectedWhenEtcdGoesBeforeTheWatch(t *testing.T) {
	m := etcdtest.Start(t)
	const health = 300 * time.Millisecond
	ring := tickets.NewRing(tickets.Options{EncryptDecryptLifetime: ed, DecryptLifetime: do})
	s, err := newSync(Options{
		Endpoints: []string{m.ClientURL}, Prefix: prefix, Secret: secret(t, 1), Ring: ring,
		EncryptDecrypt: ed, DecryptOnly: do, SessionTTL: time.Second, Lead: lead, Identity: "gw-1",
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, HealthInterval: health,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &stopAtWatch{Watcher: s.cli.Watcher, key: prefix + "tickets", stop: m.Stop, stopped: make(chan struct{})}
	s.cli.Watcher = w
	s.start()
	t.Cleanup(func() { s.Close() })
	select {
	case <-w.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not list and watch within 10 s")
	}
	if st := s.Status(); st.State != "connected" {
		t.Fatalf("status after the list: %+v, want connected", st)
	}
	gone := time.Now()
	// Two health intervals is the bound; the rest is slack for a loaded
	// machine (without the health check beside the watch, it never came).
	waitFor(t, 2*health+2*time.Second, "the status to leave connected", func() bool { return s.Status().State != "connected" })
	st := s.Status()
	t.Logf("status %v after etcd went: %+v", time.Since(gone).Round(time.Millisecond), st)
	if st.State != "retrying" || !strings.Contains(st.LastError, "health check") || st.Role == "follower" {
		t.Fatalf("status with etcd gone: %+v, want retrying on the health check's error, not a follower", st)
	}
	// etcd back: the follower lists and watches again.
	m.Start(t)
	m.WaitReady(t, 20*time.Second)
	waitFor(t, 10*time.Second, "connected again", func() bool { return s.Status().State == "connected" })
}

// stopAtWatch runs stop once, when a watch on key begins.
type stopAtWatch struct {
	clientv3.Watcher
	key     string
	once    sync.Once
	stop    func()
	stopped chan struct{}
}

func (w *stopAtWatch) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	if key == w.key {
		w.once.Do(func() { w.stop(); close(w.stopped) })
	}
	return w.Watcher.Watch(ctx, key, opts...)
}
