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

// Two gateways; the rotator crashes (its lease is not revoked: etcd drops
// it after the TTL); the other takes over. At every step of the clock the
// survivor's ring has a key that seals: issuance never pauses.
func TestTakeoverIssuanceNeverPauses(t *testing.T) {
	m := etcdtest.Start(t)
	clk := fakeclock.New(t0)
	a := startGateway(t, m, clk, "gw-a", 1)
	b := startGateway(t, m, clk, "gw-b", 1)
	waitFor(t, 10*time.Second, "one rotator", func() bool { return (a.role() == "rotator") != (b.role() == "rotator") })
	leader, follower := a, b
	if b.role() == "rotator" {
		leader, follower = b, a
	}
	// The follower learns who rotates from the election key, by its watch.
	waitFor(t, 5*time.Second, "the follower to see the rotator", func() bool {
		st := follower.s.Status()
		return st.Role == "follower" && st.Rotator == leader.s.opt.Identity
	})
	cli := dial(t, m)
	leader.caughtUp(t, cli, clk.Now())
	follower.caughtUp(t, cli, clk.Now())
	if len(follower.ring.Keys()) != 1 {
		t.Fatalf("follower holds %d keys, want the rotator's first", len(follower.ring.Keys()))
	}

	// A ticket sealed by the leader's ring opens in the follower's.
	tk, err := leader.ring.Seal(ticketState(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.ring.OpenTicket(tk); err != nil {
		t.Fatalf("ticket sealed by the rotator's ring does not open in the follower's: %v", err)
	}

	step := 5 * time.Minute
	crashed := false
	for i := 1; i <= 60; i++ { // five hours
		clk.Advance(step)
		if !sealer(follower.ring) {
			t.Fatalf("step %d (%v): the survivor's ring has no key that seals", i, clk.Now().Sub(t0))
		}
		if !crashed && !sealer(leader.ring) {
			t.Fatalf("step %d: the rotator's ring has no key that seals", i)
		}
		switch {
		case i == 17: // just past a half-life: the leader has added, then dies
			leader.looked(t, clk.Now())
			leader.s.cli.Close() // a crash: nothing revoked
			leader.s.Close()
			crashed = true
			continue
		case crashed && follower.role() != "rotator":
			// No rotator for a while (the dead one's lease runs out): the
			// clock runs on and the check above keeps holding.
			if i > 20 {
				waitFor(t, 10*time.Second, "the survivor to take over", func() bool { return follower.role() == "rotator" })
			} else {
				continue
			}
		}
		if crashed {
			follower.looked(t, clk.Now())
		} else {
			leader.looked(t, clk.Now())
			leader.caughtUp(t, cli, clk.Now())
		}
		// The follower's ring follows within the step.
		follower.caughtUp(t, cli, clk.Now())
	}
	if st := follower.s.Status(); st.Role != "rotator" || st.Added == 0 {
		t.Fatalf("survivor status %+v: want the rotator, having added keys", st)
	}
	// A ticket sealed now opens; the one from the start is past its key's
	// life and is refused.
	tk2, err := follower.ring.Seal(ticketState(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.ring.OpenTicket(tk2); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.ring.OpenTicket(tk); err == nil {
		t.Fatal("a ticket of a key past its life opened")
	}
}

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

// A rotator that stops cleanly revokes its lease: the other takes over at
// once, not after the TTL (10 s here).
func TestCleanCloseHandsOverAtOnce(t *testing.T) {
	m := etcdtest.Start(t)
	clk := fakeclock.New(t0)
	a := startGatewayTTL(t, m, clk, "gw-a", 1, 10*time.Second)
	b := startGatewayTTL(t, m, clk, "gw-b", 1, 10*time.Second)
	waitFor(t, 10*time.Second, "one rotator", func() bool { return (a.role() == "rotator") != (b.role() == "rotator") })
	leader, follower := a, b
	if b.role() == "rotator" {
		leader, follower = b, a
	}
	start := time.Now()
	leader.s.Close()
	waitFor(t, 3*time.Second, "the follower to take over at once", func() bool { return follower.role() == "rotator" })
	t.Logf("handover after a clean stop: %v", time.Since(start).Round(time.Millisecond))
	if st := follower.s.Status(); st.Rotator != follower.s.opt.Identity {
		t.Fatalf("rotator %q, want %q", st.Rotator, follower.s.opt.Identity)
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

// A campaigning gateway whose session is lost while etcd answers (its lease
// revoked, as by an operator or an expiry) campaigns again at once: the
// backoff is for an etcd that does not answer, and a wait grown by earlier
// losses would delay the takeover when the rotator dies next.
func TestCampaignAgainAfterEachLostSession(t *testing.T) {
	m := etcdtest.Start(t)
	cli := dial(t, m)
	clk := fakeclock.New(t0)
	leader := startGateway(t, m, clk, "gw-a", 1)
	waitFor(t, 10*time.Second, "the rotator", func() bool { return leader.role() == "rotator" })
	ring := tickets.NewRing(tickets.Options{Now: clk.Now, EncryptDecryptLifetime: ed, DecryptLifetime: do})
	s, err := Start(Options{
		Endpoints: []string{m.ClientURL}, Prefix: prefix, Secret: secret(t, 1), Ring: ring,
		EncryptDecrypt: ed, DecryptOnly: do, SessionTTL: time.Second, Lead: lead, Check: 20 * time.Millisecond,
		Identity: "gw-b", Now: clk.Now, MinBackoff: 50 * time.Millisecond, MaxBackoff: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// gw-b's election key: the one whose value is its identity.
	lease := func() clientv3.LeaseID {
		resp, err := cli.Get(ctx, prefix+"tickets-rotator/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) == "gw-b" {
				return clientv3.LeaseID(kv.Lease)
			}
		}
		return 0
	}
	waitFor(t, 10*time.Second, "gw-b campaigning", func() bool { return lease() != 0 })
	for i := range 8 {
		old := lease()
		if _, err := cli.Revoke(ctx, old); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 20*time.Second, "gw-b campaigning again", func() bool { l := lease(); return l != 0 && l != old })
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("lost session %d: campaigning again after %v", i+1, took.Round(time.Millisecond))
		}
	}
}
