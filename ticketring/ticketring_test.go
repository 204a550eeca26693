package ticketring

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/handshake"
	"stunnel/internal/etcdtest"
	"stunnel/internal/fakeclock"
	"stunnel/internal/waitfor"
	"stunnel/tickets"
)

const (
	ed     = time.Hour     // encrypt-decrypt life of the keys the rotator adds
	do     = 2 * time.Hour // decrypt-only life
	lead   = time.Minute
	prefix = "/st/"
)

var t0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

func secret(t testing.TB, b byte) *tickets.GroupSecret {
	t.Helper()
	g, err := tickets.NewGroupSecret(bytes.NewReader(bytes.Repeat([]byte{b}, tickets.GroupSecretSize)))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, timeout, 5*time.Millisecond, what, cond)
}

type gateway struct {
	s    *Sync
	ring *tickets.Ring
}

func startGateway(t testing.TB, m *etcdtest.Member, clk *fakeclock.Clock, id string, b byte) *gateway {
	return startGatewayTTL(t, m, clk, id, b, time.Second)
}

func startGatewayTTL(t testing.TB, m *etcdtest.Member, clk *fakeclock.Clock, id string, b byte, ttl time.Duration) *gateway {
	t.Helper()
	ring := tickets.NewRing(tickets.Options{Now: clk.Now, EncryptDecryptLifetime: ed, DecryptLifetime: do})
	s, err := Start(Options{
		Endpoints: []string{m.ClientURL}, Prefix: prefix, Secret: secret(t, b), Ring: ring,
		EncryptDecrypt: ed, DecryptOnly: do, SessionTTL: ttl, Lead: lead, Check: 20 * time.Millisecond,
		Identity: id, Now: clk.Now, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		HealthInterval: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.WaitSynced(10 * time.Second) {
		t.Fatalf("%s: no first list from etcd", id)
	}
	return &gateway{s: s, ring: ring}
}

func (g *gateway) role() string { return g.s.Status().Role }

// looked waits until the rotator has looked at the ring at the clock's now.
func (g *gateway) looked(t testing.TB, now time.Time) {
	t.Helper()
	waitFor(t, 10*time.Second, "the rotator to look at "+now.Format(time.TimeOnly), func() bool {
		g.s.mu.Lock()
		defer g.s.mu.Unlock()
		return !g.s.looked.Before(now)
	})
}

// synced waits until g's ring holds exactly n keys from etcd.
func (g *gateway) holds(t testing.TB, n int) []tickets.KeyInfo {
	t.Helper()
	waitFor(t, 10*time.Second, "the ring to hold the records", func() bool { return len(g.ring.Keys()) == n })
	return g.ring.Keys()
}

// caughtUp waits until g's ring holds every record in etcd that has not
// ended at the clock's now, and nothing else that has not ended: its watch
// has caught up with the rotator's writes.
func (g *gateway) caughtUp(t testing.TB, cli *clientv3.Client, now time.Time) {
	t.Helper()
	var want, got []string
	waitFor(t, 10*time.Second, "the ring to catch up with etcd", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, prefix+"tickets/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		want, got = nil, nil
		for _, kv := range resp.Kvs {
			name, _ := recordName(prefix+"tickets/", string(kv.Key))
			k, err := tickets.OpenRecord(g.s.opt.Secret, prefix, name, kv.Value)
			if err == nil && k.State(now) != tickets.KeyExpired {
				want = append(want, k.NameHex())
			}
			k.Erase()
		}
		for _, k := range g.ring.Keys() {
			if k.State != tickets.KeyExpired {
				got = append(got, k.Name)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		return slices.Equal(want, got)
	})
}

func records(t testing.TB, cli *clientv3.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix+"tickets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// putRecord writes rec, as is, at name among the ring's records.
func putRecord(t testing.TB, cli *clientv3.Client, name string, rec []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, prefix+"tickets/"+name, string(rec)); err != nil {
		t.Fatal(err)
	}
}

func dial(t testing.TB, m *etcdtest.Member) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// sealer reports whether ring has a key in its encrypt-decrypt life: a
// ticket can be issued now.
func sealer(ring *tickets.Ring) bool {
	for _, k := range ring.Keys() {
		if k.State == tickets.KeyEncryptDecrypt {
			return true
		}
	}
	return false
}

func ticketState(now time.Time) *handshake.TicketState {
	return &handshake.TicketState{PeerID: "client", AuthTime: now, Cipher: handshake.CipherChaCha20Poly1305}
}

func TestRotatorAddsAtHalfLifeAndDeletesEnded(t *testing.T) {
	m := etcdtest.Start(t)
	cli := dial(t, m)
	clk := fakeclock.New(t0)
	g := startGateway(t, m, clk, "gw-1", 1)
	waitFor(t, 10*time.Second, "the only gateway to be the rotator", func() bool { return g.role() == "rotator" })

	// No key at all: one is added at once and seals at once.
	first := g.holds(t, 1)[0]
	if first.State != tickets.KeyEncryptDecrypt || !first.Created.Equal(t0) {
		t.Fatalf("first key %+v, want sealing from %v", first, t0)
	}
	// Just before half-life: nothing new.
	clk.Advance(ed/2 - time.Second)
	g.looked(t, clk.Now())
	if n := records(t, cli); n != 1 {
		t.Fatalf("%d records before half-life, want 1", n)
	}
	// Half-life: a second key, pending for the lead time, then sealing.
	clk.Advance(time.Second)
	g.looked(t, clk.Now())
	ks := g.holds(t, 2)
	if ks[1].State != tickets.KeyPending || !ks[1].Created.Equal(clk.Now().Add(lead)) {
		t.Fatalf("key added at half-life: %+v, want pending until %v", ks[1], clk.Now().Add(lead))
	}
	// The first key ends at t0 + ed + do: the ring drops it then, by its
	// clock. Its record goes once the keys added since show its life over
	// too (scheduleOver): about half an encrypt-decrypt life later. Walk
	// in steps, so each half-life is seen.
	for hasRecord(t, cli, first.Name) && !clk.Now().After(t0.Add(ed+do+ed)) {
		clk.Advance(5 * time.Minute)
		g.looked(t, clk.Now())
	}
	switch {
	case hasRecord(t, cli, first.Name):
		t.Fatalf("the first key's record is still in etcd at %v, an encrypt-decrypt life past its end", clk.Now().Sub(t0))
	case clk.Now().Before(t0.Add(ed + do)):
		t.Fatalf("the first key's record was deleted at %v, before its end at %v", clk.Now().Sub(t0), ed+do)
	}
	t.Logf("the first key (life %v) was deleted at %v", ed+do, clk.Now().Sub(t0))
	g.caughtUp(t, cli, clk.Now())
	waitFor(t, 5*time.Second, "the ended key to leave the ring", func() bool {
		return !slices.ContainsFunc(g.ring.Keys(), func(k tickets.KeyInfo) bool { return k.Name == first.Name })
	})
	st := g.s.Status()
	if st.Deleted == 0 || st.Added < 3 {
		t.Fatalf("status %+v: want ended records deleted and keys added every half-life", st)
	}
	// Records: the keys of one life (ed+do / (ed/2) = 6 half-lives), the
	// one half-life of margin and the newest.
	if n := records(t, cli); n > 8 {
		t.Fatalf("%d records, want at most 8", n)
	}
}

// etcd away: the ring keeps its keys; when etcd is back the watch resumes
// and the rotator goes on. Close leaves no goroutine behind.
func TestEtcdAwayKeepsKeysAndResumes(t *testing.T) {
	m := etcdtest.Start(t)
	before := runtime.NumGoroutine()
	clk := fakeclock.New(t0)
	g := startGateway(t, m, clk, "gw-1", 1)
	waitFor(t, 10*time.Second, "the rotator", func() bool { return g.role() == "rotator" })
	g.holds(t, 1)

	m.Stop()
	waitFor(t, 15*time.Second, "the outage to be seen", func() bool { return g.s.Status().State == "retrying" })
	if !sealer(g.ring) {
		t.Fatal("etcd away: the ring dropped its key")
	}
	clk.Advance(ed / 2)
	m.Start(t)
	m.WaitReady(t, 20*time.Second)
	waitFor(t, 20*time.Second, "the watch to resume", func() bool { return g.s.Status().State == "connected" })
	waitFor(t, 20*time.Second, "a rotator again", func() bool { return g.role() == "rotator" })
	g.looked(t, clk.Now())
	g.holds(t, 2)

	if err := g.s.Close(); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("close: %v", err)
	}
	waitFor(t, 10*time.Second, "goroutines to end after Close", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// No etcd at all: nothing seals (no key of our own that the group would
// not open), the error says where to look, and Close returns promptly
// without leaving goroutines.
func TestStartWithoutEtcd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	before := runtime.NumGoroutine()
	clk := fakeclock.New(t0)
	ring := tickets.NewRing(tickets.Options{Now: clk.Now})
	s, err := Start(Options{Endpoints: []string{"http://" + addr}, Prefix: prefix, Secret: secret(t, 1), Ring: ring,
		EncryptDecrypt: ed, DecryptOnly: do, Now: clk.Now, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.WaitSynced(500 * time.Millisecond) {
		t.Fatal("synced without etcd")
	}
	if st := s.Status(); st.Role != "connecting" || st.Keys != 0 {
		t.Fatalf("status without etcd: %+v", st)
	}
	_, err = ring.Seal(ticketState(clk.Now()))
	if !errors.Is(err, tickets.ErrNoTicketKey) || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("sealing without etcd: %v, want no key, pointing at etcd", err)
	}
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v without etcd", took)
	}
	waitFor(t, 10*time.Second, "goroutines to end after Close", func() bool { return runtime.NumGoroutine() <= before+2 })
}
