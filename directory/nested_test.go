package directory

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"stunnel/conf"
	"stunnel/internal/etcdtest"
)

// Two fleets whose prefixes nest, /f/ and /f/peers/eu/ (made by hand, or by
// an older stunnel: check refuses such a prefix now): the inner fleet's keys
// lie below PREFIX peers/ of the outer one. A record is the key right below
// PREFIX peers/, so the outer fleet never takes them for records (it skips
// them as malformed, logged once), and each fleet has exactly its own peers.
func TestNestedFleetsReadOnlyTheirOwnRecords(t *testing.T) {
	m := etcdtest.Start(t)
	cli := client(t, m)
	const outer, inner = "/f/", "/f/peers/eu/"
	if err := conf.CheckDirectoryPrefix(inner); err == nil {
		t.Errorf("check accepts %q, nested in the key space of a fleet at %q", inner, outer)
	}
	for _, dir := range []string{PeersDir, EndpointsDir} {
		if !slices.Contains(conf.PrefixKeySpaces, strings.TrimSuffix(dir, "/")) {
			t.Errorf("conf.PrefixKeySpaces %v lacks %q", conf.PrefixKeySpaces, dir)
		}
	}
	if err := Put(ctx(t), cli, outer, testPeer(t, "a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := Put(ctx(t), cli, inner, testPeer(t, "x", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx(t), EndpointKey(inner, "x"), `{"version":1,"endpoint":"198.18.0.2:51820"}`); err != nil {
		t.Fatal(err)
	}
	var wo, wi watcher
	o := startWith(t, Options{Endpoints: []string{m.ClientURL}, Prefix: outer}, &wo)
	i := startWith(t, Options{Endpoints: []string{m.ClientURL}, Prefix: inner}, &wi)
	waitFor(t, 5*time.Second, "the inner fleet's list", func() bool { return wi.ids() == "x," })
	waitFor(t, 5*time.Second, "the outer fleet's list", func() bool { return wo.ids() != "" })
	if got := wo.ids(); got != "a," {
		t.Fatalf("the outer fleet %s has peers %q, want only its own \"a,\"", outer, got)
	}
	if st := o.State(); st.Malformed != 2 {
		t.Fatalf("outer state %+v: want the inner fleet's record and endpoint skipped", st)
	}

	// Changes as they come: the inner fleet's new record is its own only.
	if err := Put(ctx(t), cli, inner, testPeer(t, "y", 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the inner fleet to add y", func() bool { return wi.ids() == "x,y," })
	waitFor(t, 5*time.Second, "the outer fleet to skip y", func() bool { return o.State().Malformed == 3 })
	if got := o.Peers(); len(got) != 1 || got[0].ID != "a" || got[0].Endpoint != "" {
		t.Fatalf("outer peers %+v, want only a", got)
	}
	if err := Delete(ctx(t), cli, inner, "y"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the inner fleet to drop y", func() bool { return wi.ids() == "x," })
	waitFor(t, 5*time.Second, "the outer fleet to forget y", func() bool { return o.State().Malformed == 2 })
	if got := i.Peers(); len(got) != 1 || got[0].Endpoint != "198.18.0.2:51820" {
		t.Fatalf("inner peers %+v, want x with its published endpoint", got)
	}

	// `stunnel directory list` of the outer fleet: one record, the rest
	// listed as not records.
	entries, _, err := List(ctx(t), cli, outer)
	if err != nil {
		t.Fatal(err)
	}
	var valid []string
	for _, e := range entries {
		if e.Err == nil {
			valid = append(valid, e.ID)
		} else if !errors.Is(e.Err, errDeeperKey) {
			t.Errorf("entry %s: %v, want it listed as a deeper key", e.Key, e.Err)
		}
	}
	if strings.Join(valid, ",") != "a" || len(entries) != 3 {
		t.Fatalf("list of %s: %+v, want a, and x's record and endpoint as not records", outer, entries)
	}

	// A record's ID is the key's last part: one with "/" is refused
	// before it is written.
	p := testPeer(t, "eu/peers/z", 4)
	if err := Put(ctx(t), cli, outer, p); err == nil || !strings.Contains(err.Error(), `"/"`) {
		t.Fatalf("put of id %q: %v, want refused for its \"/\"", p.ID, err)
	}
}
