package rekey

import (
	"sync"
	"testing"
	"time"
)

func TestNextNonceCountsFromZero(t *testing.T) {
	k, _ := pair(t, DefaultPolicy(), t0, 1, 2)
	for want := uint64(0); want < 5; want++ {
		n, ok := k.NextNonce(t0)
		if !ok || n != want {
			t.Fatalf("NextNonce = %d, %v; want %d, true", n, ok, want)
		}
	}
}

func TestNoKeySealsAfterRejectAfterTime(t *testing.T) {
	p := DefaultPolicy()
	k, r := pair(t, p, t0, 1, 2)
	just := at(p.RejectAfterTime - time.Millisecond)
	if _, ok := k.NextNonce(just); !ok {
		t.Fatal("NextNonce refused 1 ms before reject_after")
	}
	if r.CheckCounter(0, just) != Fresh {
		t.Fatal("CheckCounter refused 1 ms before reject_after")
	}
	for _, now := range []time.Time{at(p.RejectAfterTime), at(p.RejectAfterTime + time.Hour)} {
		if n, ok := k.NextNonce(now); ok {
			t.Fatalf("NextNonce at %v after creation = %d, true; the key must never seal again", now.Sub(t0), n)
		}
		if r.CheckCounter(1, now) == Fresh {
			t.Fatalf("CheckCounter at %v after creation accepted a packet under an expired key", now.Sub(t0))
		}
		if !k.Expired(now) {
			t.Fatalf("Expired(%v) = false", now.Sub(t0))
		}
	}
	if k.Expired(just) {
		t.Fatal("Expired 1 ms before reject_after")
	}
}

func TestRekeyOnTimeOnlyForInitiator(t *testing.T) {
	p := DefaultPolicy()
	i, r := pair(t, p, t0, 1, 2)
	before, after := at(p.RekeyAfterTime-time.Millisecond), at(p.RekeyAfterTime)
	if i.NeedsRekeyOnSend(before) || r.NeedsRekeyOnSend(before) {
		t.Fatal("rekey wanted before rekey_after")
	}
	if !i.NeedsRekeyOnSend(after) {
		t.Fatal("initiator does not want a rekey at rekey_after")
	}
	if r.NeedsRekeyOnSend(after) || r.NeedsRekeyOnSend(at(p.RejectAfterTime-time.Millisecond)) {
		t.Fatal("responder wants a rekey on time; only the initiator may, or both sides would start together")
	}
	recvAge := p.RejectAfterTime - p.KeepaliveTimeout - p.RekeyTimeout
	if i.NeedsRekeyOnReceive(at(recvAge-time.Millisecond)) || !i.NeedsRekeyOnReceive(at(recvAge)) {
		t.Fatalf("initiator NeedsRekeyOnReceive does not switch at %v", recvAge)
	}
	if r.NeedsRekeyOnReceive(at(recvAge)) {
		t.Fatal("responder NeedsRekeyOnReceive on time")
	}
}

// TestCounterExhaustion: either side wants a rekey at RekeyAfterMessages, and
// NextNonce refuses from RejectAfterMessages on, however often it is asked
// (a counter that kept growing would wrap and reuse nonces).
func TestCounterExhaustion(t *testing.T) {
	p := DefaultPolicy()
	p.RekeyAfterMessages, p.RejectAfterMessages = 4, 8
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, initiator := range []bool{true, false} {
		i, r := pair(t, p, t0, 1, 2)
		k := r
		if initiator {
			k = i
		}
		for n := uint64(0); n < 8; n++ {
			if got := k.NeedsRekeyOnSend(t0); got != (n >= 4) {
				t.Fatalf("initiator=%v after %d sends: NeedsRekeyOnSend = %v", initiator, n, got)
			}
			if got, ok := k.NextNonce(t0); !ok || got != n {
				t.Fatalf("initiator=%v: NextNonce = %d, %v; want %d, true", initiator, got, ok, n)
			}
		}
		for range 100000 {
			if n, ok := k.NextNonce(t0); ok {
				t.Fatalf("initiator=%v: NextNonce = %d after RejectAfterMessages", initiator, n)
			}
		}
		if k.sendCounter.Load() != 8 {
			t.Fatalf("send counter moved past the limit to %d", k.sendCounter.Load())
		}
		if !k.NeedsRekeyOnSend(t0) {
			t.Fatal("NeedsRekeyOnSend false on an exhausted key")
		}
	}
}

func TestCheckCounterReplayAndLimit(t *testing.T) {
	p := DefaultPolicy()
	p.RekeyAfterMessages, p.RejectAfterMessages = 100, 1000
	_, r := pair(t, p, t0, 1, 2)
	for _, c := range []struct {
		n    uint64
		want bool
	}{{0, true}, {0, false}, {5, true}, {3, true}, {5, false}, {999, true}, {1000, false}, {1 << 40, false}} {
		if got := r.CheckCounter(c.n, t0) == Fresh; got != c.want {
			t.Fatalf("CheckCounter(%d) fresh: %v, want %v", c.n, got, c.want)
		}
	}
}

func TestZeroWipesKeysAndDisables(t *testing.T) {
	k1, k2 := randKey(t), randKey(t)
	k := NewKeypair(nil, nil, k1, k2, 1, 2, [32]byte{}, t0, true, DefaultPolicy())
	k.Zero()
	k.Zero() // idempotent
	if *k1 != [32]byte{} || *k2 != [32]byte{} {
		t.Fatal("raw keys not zeroed")
	}
	if _, ok := k.NextNonce(t0); ok {
		t.Fatal("NextNonce succeeded on a zeroed key")
	}
	if k.CheckCounter(0, t0) == Fresh {
		t.Fatal("CheckCounter accepted a counter under a zeroed key")
	}
	if !k.Expired(t0) || !k.IsZeroed() {
		t.Fatal("zeroed key not reported expired")
	}
	NewKeypair(nil, nil, nil, nil, 1, 2, [32]byte{}, t0, false, DefaultPolicy()).Zero() // nil keys allowed
}

func TestNewKeypairSurvivesInvalidWindow(t *testing.T) {
	p := DefaultPolicy()
	p.ReplayWindow = 3 // Validate would refuse; NewKeypair still protects
	_, r := pair(t, p, t0, 1, 2)
	if r.CheckCounter(7, t0) != Fresh || r.CheckCounter(7, t0) == Fresh {
		t.Fatal("keypair with a bad window does not filter replays")
	}
}

func TestNoncesUniqueUnderConcurrency(t *testing.T) {
	p := DefaultPolicy()
	p.RekeyAfterMessages, p.RejectAfterMessages = 1000, 5000
	k, _ := pair(t, p, t0, 1, 2)
	const workers = 8
	got := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				n, ok := k.NextNonce(t0)
				if !ok {
					return
				}
				got[w] = append(got[w], n)
			}
		})
	}
	wg.Wait()
	seen := make(map[uint64]bool)
	for _, ns := range got {
		for _, n := range ns {
			if seen[n] || n >= 5000 {
				t.Fatalf("nonce %d handed out twice or over the limit", n)
			}
			seen[n] = true
		}
	}
	if len(seen) != 5000 {
		t.Fatalf("%d nonces handed out, want exactly 5000", len(seen))
	}
}

// CheckCounter tells a replay from a packet under a key that is gone: the
// data plane counts them under different reasons (replayed, key_expired),
// and an operator reads the first as an attack, the second as a timer.
func TestCheckCounterTellsReplayFromExpiredKey(t *testing.T) {
	p := DefaultPolicy()
	far := p.ReplayWindow * 4
	_, r := pair(t, p, t0, 1, 2)
	for _, c := range []struct {
		n    uint64
		now  time.Time
		want Verdict
	}{
		{0, t0, Fresh},
		{0, t0, Replayed},  // seen
		{far, t0, Fresh},   // moves the window
		{10, t0, Replayed}, // older than the window
		{far + 1, at(p.RejectAfterTime - time.Millisecond), Fresh},
		{far + 2, at(p.RejectAfterTime), KeyExpired}, // fresh counter, dead key
		{far, at(p.RejectAfterTime), KeyExpired},     // seen, but the key's age decides
	} {
		if got := r.CheckCounter(c.n, c.now); got != c.want {
			t.Fatalf("CheckCounter(%d) at %v = %d, want %d", c.n, c.now.Sub(t0), got, c.want)
		}
	}
	_, zeroed := pair(t, p, t0, 1, 2)
	zeroed.Zero()
	if got := zeroed.CheckCounter(0, t0); got != KeyExpired {
		t.Fatalf("zeroed key: %d, want KeyExpired", got)
	}
	_, retired := pair(t, p, t0, 1, 2)
	if _, err := retired.Retire(); err != nil {
		t.Fatal(err)
	}
	if got := retired.CheckCounter(0, t0); got != KeyExpired {
		t.Fatalf("retired key: %d, want KeyExpired", got)
	}
}
