package rekey

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func slotsAre(t *testing.T, s *Keypairs, prev, cur, next *Keypair) {
	t.Helper()
	p, c, n := s.Slots()
	if p != prev || c != cur || n != next {
		t.Fatalf("slots (previous, current, next) = (%p, %p, %p), want (%p, %p, %p)", p, c, n, prev, cur, next)
	}
}

func droppedAre(t *testing.T, got []*Keypair, want ...*Keypair) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("dropped %d keypairs, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("dropped[%d] = %p, want %p", i, got[i], want[i])
		}
		if !got[i].IsZeroed() {
			t.Fatalf("dropped[%d] not zeroed", i)
		}
	}
}

func TestInstallInitiator(t *testing.T) {
	p := DefaultPolicy()
	var s Keypairs
	k1, _ := pair(t, p, t0, 1, 2)
	k2, _ := pair(t, p, t0, 3, 4)
	k3, _ := pair(t, p, t0, 5, 6)
	droppedAre(t, s.Install(k1))
	slotsAre(t, &s, nil, k1, nil)
	droppedAre(t, s.Install(k2))
	slotsAre(t, &s, k1, k2, nil)
	droppedAre(t, s.Install(k3), k1)
	slotsAre(t, &s, k2, k3, nil)
	if s.Current(t0) != k3 {
		t.Fatal("initiator does not send with its new key at once")
	}
}

func TestInstallResponderWaitsForConfirmation(t *testing.T) {
	p := DefaultPolicy()
	var s Keypairs
	_, r1 := pair(t, p, t0, 1, 2)
	_, r2 := pair(t, p, t0, 3, 4)
	_, r3 := pair(t, p, t0, 5, 6)
	droppedAre(t, s.Install(r1))
	slotsAre(t, &s, nil, nil, r1)
	if s.Current(t0) != nil {
		t.Fatal("responder sends under a key the initiator has not confirmed")
	}
	if promoted, _ := s.Received(r2); promoted {
		t.Fatal("a keypair not in next was promoted")
	}
	promoted, dropped := s.Received(r1)
	if !promoted || len(dropped) != 0 {
		t.Fatalf("Received(next) = %v, %d dropped; want promoted, none dropped", promoted, len(dropped))
	}
	slotsAre(t, &s, nil, r1, nil)
	if promoted, _ := s.Received(r1); promoted {
		t.Fatal("current promoted twice")
	}
	droppedAre(t, s.Install(r2))
	slotsAre(t, &s, nil, r1, r2)
	if s.Current(t0) != r1 {
		t.Fatal("responder switched before confirmation")
	}
	droppedAre(t, s.Install(r3), r2) // a newer handshake supersedes the pending next
	slotsAre(t, &s, nil, r1, r3)
	s.Received(r3)
	slotsAre(t, &s, r1, r3, nil)
}

// TestInstallInitiatorOverPendingNext: we were responder (next pending, the
// peer may already send under it) and now complete our own initiation: both
// sides initiated at once. The lower session ID wins on both sides.
func TestInstallInitiatorOverPendingNext(t *testing.T) {
	p := DefaultPolicy()
	for _, mineWins := range []bool{true, false} {
		t.Run(fmt.Sprintf("mineWins=%v", mineWins), func(t *testing.T) {
			var s Keypairs
			old, _ := pair(t, p, t0, 1, 2)
			_, pend := pair(t, p, t0, 3, 4)
			mine, _ := pair(t, p, t0, 5, 6)
			mine.SessionID, pend.SessionID = [32]byte{1}, [32]byte{2}
			if !mineWins {
				mine.SessionID, pend.SessionID = pend.SessionID, mine.SessionID
			}
			s.Install(old)
			s.Install(pend)
			if !mineWins {
				droppedAre(t, s.Install(mine), mine)
				slotsAre(t, &s, nil, old, pend)
				if promoted, _ := s.Received(pend); !promoted {
					t.Fatal("the winning peer session was not promoted by its first packet")
				}
				slotsAre(t, &s, old, pend, nil)
				return
			}
			droppedAre(t, s.Install(mine))
			slotsAre(t, &s, old, mine, pend)
			if promoted, _ := s.Received(pend); promoted {
				t.Fatal("the losing peer session was promoted over ours")
			}
			slotsAre(t, &s, old, mine, pend)
			// Our next rekey keeps the stale next until a new one replaces it.
			newer, _ := pair(t, p, t0, 7, 8)
			droppedAre(t, s.Install(newer), old)
			slotsAre(t, &s, mine, newer, pend)
			_, fresh := pair(t, p, t0, 9, 10)
			droppedAre(t, s.Install(fresh), pend)
			if promoted, _ := s.Received(fresh); !promoted {
				t.Fatal("a responder session after a stale one was not promoted")
			}
		})
	}
}

// TestInstallInitiatedOverOlderNext: we answered the peer's initiation
// before we sent ours, so it is no crossing and nothing is tie-broken: the
// peer's session becomes previous (the peer may send under it), ours current.
func TestInstallInitiatedOverOlderNext(t *testing.T) {
	p := DefaultPolicy()
	var s Keypairs
	old, _ := pair(t, p, t0, 1, 2)
	_, pend := pair(t, p, t0, 3, 4)
	mine, _ := pair(t, p, at(time.Second), 5, 6)
	mine.SessionID, pend.SessionID = [32]byte{2}, [32]byte{1} // would lose a tie-break
	s.Install(old)
	s.Install(pend)
	droppedAre(t, s.InstallInitiated(mine, at(time.Millisecond)), old)
	slotsAre(t, &s, pend, mine, nil)
}

func TestCurrentSkipsUnusableKeys(t *testing.T) {
	p := DefaultPolicy()
	p.RekeyAfterMessages, p.RejectAfterMessages = 1, 2
	var s Keypairs
	if s.Current(t0) != nil {
		t.Fatal("empty slots have a current key")
	}
	k, _ := pair(t, p, t0, 1, 2)
	s.Install(k)
	if s.Current(at(p.RejectAfterTime)) != nil {
		t.Fatal("Current returned an expired key")
	}
	k.NextNonce(t0)
	k.NextNonce(t0)
	if s.Current(t0) != nil {
		t.Fatal("Current returned a key with no send counters left")
	}
}

func TestExpireZeroesThenRemoves(t *testing.T) {
	p := DefaultPolicy()
	var s Keypairs
	old, _ := pair(t, p, t0, 1, 2)
	cur, _ := pair(t, p, at(100*time.Second), 3, 4)
	s.Install(old)
	s.Install(cur)
	droppedAre(t, s.Expire(at(p.RejectAfterTime-time.Millisecond)))
	if old.IsZeroed() {
		t.Fatal("zeroed before reject_after")
	}
	droppedAre(t, s.Expire(at(p.RejectAfterTime)))
	if !old.IsZeroed() || cur.IsZeroed() {
		t.Fatal("Expire at reject_after must zero exactly the expired key")
	}
	slotsAre(t, &s, old, cur, nil)
	droppedAre(t, s.Expire(at(3*p.RejectAfterTime)), old)
	slotsAre(t, &s, nil, cur, nil)
	droppedAre(t, s.Clear(), cur)
	slotsAre(t, &s, nil, nil, nil)
	droppedAre(t, s.Clear())
}

func TestKeypairsConcurrentUse(t *testing.T) {
	p := DefaultPolicy()
	var s Keypairs
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if k := s.Current(t0); k != nil {
					k.NextNonce(t0)
					s.Received(k)
				}
			}
		})
	}
	for i := range 500 {
		k, r := pair(t, p, t0, uint32(2*i), uint32(2*i+1))
		s.Install(k)
		s.Install(r)
		s.Received(r)
		s.Expire(t0)
	}
	close(stop)
	wg.Wait()
}

// Receiving asks the current keypair whether to rekey, not the previous
// one a late packet may come under: an old keypair we initiated, now
// previous, must not start a handshake while the current one is fresh.
func TestNeedsRekeyOnReceiveAsksCurrent(t *testing.T) {
	p := DefaultPolicy()
	recvAge := p.RejectAfterTime - p.KeepaliveTimeout - p.RekeyTimeout
	var s Keypairs
	if s.NeedsRekeyOnReceive(at(recvAge)) {
		t.Fatal("rekey wanted with no keypair")
	}
	old, _ := pair(t, p, t0, 1, 2)
	fresh, _ := pair(t, p, at(recvAge), 3, 4)
	s.Install(old)
	if !s.NeedsRekeyOnReceive(at(recvAge)) {
		t.Fatal("no rekey while the current keypair we initiated is old")
	}
	s.Install(fresh)
	slotsAre(t, &s, old, fresh, nil)
	if s.NeedsRekeyOnReceive(at(recvAge)) {
		t.Fatal("an old previous keypair asked for a rekey while the current one is fresh")
	}
	if !s.NeedsRekeyOnReceive(at(2 * recvAge)) {
		t.Fatal("no rekey once the current keypair is old")
	}
}
