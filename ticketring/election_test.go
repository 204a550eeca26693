package ticketring

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/conf"
	"stunnel/internal/etcdtest"
	"stunnel/internal/fakeclock"
	"stunnel/tickets"
)

// A key without a lease where the election keys go (written by anyone who
// may write under the prefix, or left over from a copy such as etcdctl
// make-mirror, which drops leases) would stand first in line forever: no
// lease ends to remove it. A campaigning gateway removes it.
func TestLeaselessElectionKeyDoesNotBlock(t *testing.T) {
	m := etcdtest.Start(t)
	cli := dial(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stale := prefix + "tickets-rotator/694d9f1e2a3b4c5d"
	if _, err := cli.Put(ctx, stale, "gw-gone"); err != nil {
		t.Fatal(err)
	}
	clk := fakeclock.New(t0)
	a := startGateway(t, m, clk, "gw-a", 1)
	waitFor(t, 10*time.Second, "gw-a to be the rotator past the lease-less key", func() bool { return a.role() == "rotator" })
	a.holds(t, 1)
	if n := count(t, cli, stale); n != 0 {
		t.Fatalf("the lease-less election key is still there")
	}

	// One written after gw-a's own key stands behind it; a gateway that
	// campaigns later (its key newer still) must not wait behind it once
	// gw-a stops.
	if _, err := cli.Put(ctx, stale, "gw-gone"); err != nil {
		t.Fatal(err)
	}
	b := startGateway(t, m, clk, "gw-b", 1)
	waitFor(t, 10*time.Second, "gw-b to see gw-a as the rotator", func() bool { return b.s.Status().Rotator == "gw-a" })
	a.s.Close()
	waitFor(t, 10*time.Second, "gw-b to take over past the lease-less key", func() bool { return b.role() == "rotator" })
	if n := count(t, cli, stale); n != 0 {
		t.Fatalf("the lease-less election key is still there")
	}
}

func count(t testing.TB, cli *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// conf refuses a prefix that nests in one of the ring's key spaces.
func TestKeySpacesRefusedAsPrefixParts(t *testing.T) {
	for _, dir := range []string{recordsDir, electionDir} {
		if name := strings.TrimSuffix(dir, "/"); !slices.Contains(conf.PrefixKeySpaces, name) {
			t.Errorf("conf.PrefixKeySpaces %v lacks %q", conf.PrefixKeySpaces, name)
		}
	}
}

// oneRotator waits until exactly one of a and b is the rotator and returns
// it first.
func oneRotator(t *testing.T, a, b *gateway) (leader, follower *gateway) {
	t.Helper()
	waitFor(t, 10*time.Second, "one rotator", func() bool { return (a.role() == "rotator") != (b.role() == "rotator") })
	if b.role() == "rotator" {
		return b, a
	}
	return a, b
}

// Two gateways; the rotator crashes (its lease is not revoked: etcd drops
// it after the TTL); the other takes over. At every step of the clock the
// survivor's ring has a key that seals: issuance never pauses.
func TestTakeoverIssuanceNeverPauses(t *testing.T) {
	m := etcdtest.Start(t)
	clk := fakeclock.New(t0)
	a := startGateway(t, m, clk, "gw-a", 1)
	b := startGateway(t, m, clk, "gw-b", 1)
	leader, follower := oneRotator(t, a, b)
	// The follower learns who rotates from the election key, by its watch.
	waitFor(t, 5*time.Second, "the follower to see the rotator", func() bool {
		st := follower.s.Status()
		return st.Role == "follower" && st.Rotator == leader.s.opt.Identity
	})
	cli := dial(t, m)
	// Caught up with an etcd that holds no key yet is no proof of anything:
	// wait for the rotator's first.
	waitFor(t, 10*time.Second, "the rotator's first key in etcd", func() bool { return records(t, cli) >= 1 })
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

// A rotator that stops cleanly revokes its lease: the other takes over at
// once, not after the TTL (10 s here).
func TestCleanCloseHandsOverAtOnce(t *testing.T) {
	m := etcdtest.Start(t)
	clk := fakeclock.New(t0)
	a := startGatewayTTL(t, m, clk, "gw-a", 1, 10*time.Second)
	b := startGatewayTTL(t, m, clk, "gw-b", 1, 10*time.Second)
	leader, follower := oneRotator(t, a, b)
	start := time.Now()
	leader.s.Close()
	waitFor(t, 3*time.Second, "the follower to take over at once", func() bool { return follower.role() == "rotator" })
	t.Logf("handover after a clean stop: %v", time.Since(start).Round(time.Millisecond))
	if st := follower.s.Status(); st.Rotator != follower.s.opt.Identity {
		t.Fatalf("rotator %q, want %q", st.Rotator, follower.s.opt.Identity)
	}
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
		Identity: "gw-b", Now: clk.Now, MinBackoff: 200 * time.Millisecond, MaxBackoff: 20 * time.Second,
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
		// Once campaigning again: the 200 ms backoff and up to a keepalive
		// round (TTL/3, at most 500 ms) to notice the loss. A wait grown by
		// the earlier losses doubles from 200 ms, past 6 s by the 6th (and
		// past the waitFor's 20 s by the 8th), so 6 s keeps a wide margin
		// for a loaded machine (a 3 s bound with 50 ms steps failed once).
		if took := time.Since(start); took > 6*time.Second {
			t.Fatalf("lost session %d: campaigning again after %v", i+1, took.Round(time.Millisecond))
		}
	}
}
