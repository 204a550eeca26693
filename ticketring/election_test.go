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
