package ticketring

import (
	"math"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/internal/etcdtest"
	"stunnel/internal/fakeclock"
)

// A rotator whose clock steps forward (an NTP step, a badly set clock)
// sees every key as ended. It must not delete them for the group: the
// other gateways, whose clocks are right, still seal and open with them.
// Their records go once the keys added since show their life over, and
// never before their end by the other gateway's clock.
func TestRotatorClockStepKeepsGroupKeys(t *testing.T) {
	m := etcdtest.Start(t)
	cli := dial(t, m)
	clkA, clkB := fakeclock.New(t0), fakeclock.New(t0)
	a := startGateway(t, m, clkA, "gw-a", 1)
	waitFor(t, 10*time.Second, "gw-a to be the rotator", func() bool { return a.role() == "rotator" })
	b := startGateway(t, m, clkB, "gw-b", 1)
	waitFor(t, 10*time.Second, "gw-b to follow gw-a", func() bool {
		st := b.s.Status()
		return st.Role == "follower" && st.Rotator == "gw-a"
	})
	step := func() {
		t.Helper()
		clkA.Advance(5 * time.Minute)
		clkB.Advance(5 * time.Minute)
		a.looked(t, clkA.Now())
		b.caughtUp(t, cli, clkB.Now())
	}
	for range 24 { // two hours: a key every half-life, none ended yet
		step()
	}
	before := b.ring.Keys()
	if len(before) < 4 {
		t.Fatalf("gw-b holds %d keys after two hours, want one per half-life", len(before))
	}
	tk, err := b.ring.Seal(ticketState(clkB.Now()))
	if err != nil {
		t.Fatal(err)
	}

	// gw-b still holds every key it held that has not ended by its own
	// clock, and whatever gw-a did reached it.
	keeps := func(when string) {
		t.Helper()
		held := map[string]bool{}
		for _, k := range b.ring.Keys() {
			held[k.Name] = true
		}
		for _, k := range before {
			if k.End.After(clkB.Now()) && !held[k.Name] {
				t.Fatalf("%s: gw-b lost key %s, which ends at %v by its clock (now %v)",
					when, k.Name, k.End.Sub(t0), clkB.Now().Sub(t0))
			}
		}
	}
	clkA.Advance(10 * time.Hour) // past the end of every key
	a.looked(t, clkA.Now())
	b.caughtUp(t, cli, clkB.Now())
	keeps("just after gw-a's clock stepped 10 h forward")
	if _, err := b.ring.OpenTicket(tk); err != nil {
		t.Fatalf("a ticket gw-b sealed before gw-a's clock stepped does not open: %v", err)
	}

	// Both clocks run on at the same pace: the keys of before end, and
	// their records go.
	left := func() int {
		n := 0
		for _, k := range before {
			if hasRecord(t, cli, k.Name) {
				n++
			}
		}
		return n
	}
	for i := 1; left() > 0; i++ {
		if i > 72 {
			t.Fatalf("%d records of keys that ended by both clocks still in etcd after six hours", left())
		}
		step()
		keeps(clkB.Now().Sub(t0).String() + " by gw-b's clock")
	}
	t.Logf("the last key from before the step went at %v by gw-b's clock; %d records now", clkB.Now().Sub(t0), records(t, cli))
}

// hasRecord says whether etcd has the record of the key named nameHex.
func hasRecord(t testing.TB, cli *clientv3.Client, nameHex string) bool {
	t.Helper()
	return count(t, cli, prefix+"tickets/"+nameHex) > 0
}

// Lifetimes of centuries (the config's way to say "never") must not wrap
// when the schedule adds them up: a record would look over at once and be
// deleted for the whole group while its key still seals.
func TestScheduleOverWithLifetimesOfCenturies(t *testing.T) {
	const huge = time.Duration(math.MaxInt64)
	recs := make([]record, 3)
	for i := range recs {
		recs[i].key.EncryptDecrypt, recs[i].key.DecryptOnly = huge, huge
	}
	for i, over := range scheduleOver(recs) {
		if over {
			t.Errorf("record %d of 3 with lifetimes of %v looks over", i, huge)
		}
	}
}
