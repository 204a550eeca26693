package directory

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/handshake"
	"stunnel/internal/etcdtest"
)

func TestPublishedEndpoint(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	if err := Put(ctx(t), cli, "/st/", testPeer(t, "b", 2)); err != nil { // no endpoint in the record
		t.Fatal(err)
	}
	withEP := testPeer(t, "c", 3)
	withEP.Endpoint = "198.18.0.3:51820"
	if err := Put(ctx(t), cli, "/st/", withEP); err != nil {
		t.Fatal(err)
	}
	var w watcher
	watcherDir := startDir(t, m, "", &w)
	endpointOf := func(id string) string {
		for _, p := range watcherDir.Peers() {
			if p.ID == id {
				return p.Endpoint
			}
		}
		return "(absent)"
	}
	// b publishes where it is; c tries to move its operator-set endpoint.
	publisher := func(id, ep string) *Directory {
		priv := handshake.PrivateKey{9, 9}
		d, err := Start(Options{Endpoints: []string{m.ClientURL}, Prefix: "/st/", Key: MemoryKey(&priv),
			AdvertiseID: id, AdvertiseEndpoint: ep, LeaseTTL: 2 * time.Second, MinBackoff: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	pb := publisher("b", "198.18.0.2:4242")
	publisher("c", "198.18.0.99:1")
	waitFor(t, 5*time.Second, "b's published endpoint", func() bool { return endpointOf("b") == "198.18.0.2:4242" })
	// c's publisher runs on its own: b's endpoint arriving says nothing of c's.
	waitFor(t, 5*time.Second, "c's endpoint published", func() bool {
		resp, err := cli.Get(ctx(t), EndpointKey("/st/", "c"))
		return err == nil && len(resp.Kvs) == 1
	})
	if got := endpointOf("c"); got != "198.18.0.3:51820" {
		t.Fatalf("a published endpoint overrode the record's: %q", got)
	}
	// A host's key and allowed IPs are never what it published.
	resp, _ := cli.Get(ctx(t), EndpointKey("/st/", "b"))
	if strings.Contains(string(resp.Kvs[0].Value), "public_key") || strings.Contains(string(resp.Kvs[0].Value), "allowed") {
		t.Fatalf("published value holds more than an endpoint: %s", resp.Kvs[0].Value)
	}
	// A malformed published endpoint is skipped and counted.
	if _, err := cli.Put(ctx(t), EndpointKey("/st/", "zz"), `{"version":1,"endpoint":"nope"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the malformed endpoint counted", func() bool { return watcherDir.State().Malformed == 1 })
	// Closing the publisher revokes its lease: b's endpoint goes at once.
	pb.Close()
	waitFor(t, 2*time.Second, "b's endpoint gone with its host", func() bool { return endpointOf("b") == "" })
}

// The publisher's backoff is for an etcd that does not answer: once it has
// published, a lost lease is published again at once, however many were
// lost before (each one used to double the wait, up to MaxBackoff).
func TestPublishAgainAfterEachLostLease(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	priv := handshake.PrivateKey{9, 9}
	d, err := Start(Options{Endpoints: []string{m.ClientURL}, Prefix: "/st/", Key: MemoryKey(&priv),
		AdvertiseID: "b", AdvertiseEndpoint: "198.18.0.2:4242", LeaseTTL: time.Second,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	lease := func() clientv3.LeaseID {
		resp, err := cli.Get(ctx(t), EndpointKey("/st/", "b"))
		if err != nil || len(resp.Kvs) == 0 {
			return 0
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	waitFor(t, 5*time.Second, "b's endpoint published", func() bool { return lease() != 0 })
	for i := range 8 {
		old := lease()
		if _, err := cli.Revoke(ctx(t), old); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 20*time.Second, "b's endpoint published again", func() bool { l := lease(); return l != 0 && l != old })
		// Once published again: the 200 ms backoff and up to a keepalive
		// round to notice the loss. A wait grown by the earlier losses
		// doubles from 200 ms, past 6 s by the 6th, so 6 s keeps a wide
		// margin for a loaded machine (a 3 s bound with 50 ms steps was
		// the ticket ring test's flake).
		if took := time.Since(start); took > 6*time.Second {
			t.Fatalf("lost lease %d: published again after %v", i+1, took.Round(time.Millisecond))
		}
	}
}
