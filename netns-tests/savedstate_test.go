package netnstests

import (
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// Issue 16: sessions survive a restart. Under a continuous counted UDP
// stream, clean restarts of b bring its session back from the state file:
// a sees no handshake and no counter reset, no datagram arrives twice, and
// the capture of every data packet on the underlay (three clean restarts
// and one kill -9) holds no (receiver index, counter) pair twice. Packets
// recorded before a restart and replayed after it are refused. After kill
// -9 nothing stale is restored and b handshakes at once.
func TestRestartKeepsSessions(t *testing.T) {
	l := newLab(t)
	nsA, nsB := l.ns("a"), l.ns("b")
	l.veth(nsA, "u0", underA, nsB, "u0", underB)
	l.noOffloads(nsA, "u0")
	l.noOffloads(nsB, "u0")
	a := l.newNode(nsA, "host-a", underA, overA+"/24")
	b := l.newNode(nsB, "host-b", underB, overB+"/24")
	a.addPeer(b, true, overB+"/32")
	b.addPeer(a, true, overA+"/32")
	a.start()
	b.start()
	pingUntil(t, a.ns, overB, sessionWait)
	a.waitSession(b.ID, sessionWait)

	capt := startDataCapture(t, nsA, "u0")
	counter := listenCounter(t, b.ns, overB)
	st := startStream(t, newUDPSender(t, a.ns, counter.addr())) // failover_test.go: every streamEvery
	waitFor(t, 5*time.Second, "the stream to flow", func() bool { d, _, _ := counter.counts(); return d > 100 })

	// The replays we inject cross the captured link too: remember them, so
	// the nonce check counts only what the daemons sealed.
	var injected []dataPacket
	for i := range 3 {
		replays := startCapture(t, b.ns, "u0", netip.MustParseAddr(a.Underlay), netip.MustParseAddrPort(b.endpoint()))
		waitFor(t, 5*time.Second, "datagrams to record for the replay", func() bool {
			replays.mu.Lock()
			defer replays.mu.Unlock()
			return len(replays.pkts) >= 20
		})
		replays.stop()
		before := a.peer(b.ID)
		if code := b.stop(); code != 0 {
			t.Fatalf("restart %d: b exited with %d", i, code)
		}
		stopped := time.Now()
		b.start()
		waitFor(t, 10*time.Second, "b's restored session to carry the stream", func() bool {
			d, _, _ := counter.counts()
			p, err := b.tryShow()
			pb, ok := findPeer(p, a.ID)
			return err == nil && ok && pb.Restored && pb.RxPackets > 0 && d > 0
		})
		d0, _, _ := counter.counts()
		waitFor(t, 5*time.Second, "the stream to run on the restored session", func() bool {
			d, _, _ := counter.counts()
			return d >= d0+50
		})
		after := a.peer(b.ID)
		if after.Handshakes != before.Handshakes || after.SessionID != before.SessionID {
			t.Fatalf("restart %d: a handshook again (%d -> %d handshakes, session %s -> %s)",
				i, before.Handshakes, after.Handshakes, before.SessionID, after.SessionID)
		}
		if pb := b.peer(a.ID); pb.Handshakes != before.Handshakes || !pb.Restored {
			t.Fatalf("restart %d: b's session was not restored: %+v", i, pb)
		}
		gap, lost := st.outage(counter, 0, st.count()), counter.gap(0, st.count())
		t.Logf("clean restart %d: stream gap %v, %d datagrams lost in all, %.0f ms stopped-to-running",
			i, gap, lost, float64(time.Since(stopped).Milliseconds()))

		// What b accepted before the restart is refused after it.
		replayed := b.drops(a.ID, dropReplayed)
		for _, raw := range replays.packets() {
			if p, ok := parseDataIP(raw); ok {
				injected = append(injected, p)
			}
		}
		sendRawIPv4(t, a.ns, replays.packets())
		n := uint64(len(replays.packets()))
		waitFor(t, 10*time.Second, "b to refuse the replays from before its restart", func() bool {
			return b.drops(a.ID, dropReplayed) >= replayed+n-min(n, 4)
		})
	}
	if _, dups, _ := counter.counts(); dups != 0 {
		t.Fatalf("%d datagrams arrived twice across the restarts", dups)
	}

	// kill -9: no state is written, the state file of the last start was
	// consumed, so nothing stale comes back; b handshakes at once.
	b.signal(syscall.SIGKILL)
	waitFor(t, stopWait, "b to die", b.exited)
	killed := time.Now()
	d0, _, _ := counter.counts()
	b.start()
	started := time.Now()
	waitFor(t, 10*time.Second, "the stream back after kill -9", func() bool {
		d, _, _ := counter.counts()
		return d > d0+50
	})
	back := time.Since(started)
	t.Logf("kill -9 of b: traffic back %.0f ms after the start (%.0f ms after the kill)",
		float64(back.Milliseconds()), float64(time.Since(killed).Milliseconds()))
	if back > 3*time.Second {
		t.Errorf("traffic took %v after the restart from kill -9, want within 3 s", back)
	}
	if pb := b.peer(a.ID); pb.Restored {
		t.Error("a state was restored after kill -9")
	}
	st.halt()
	if _, dups, _ := counter.counts(); dups != 0 {
		t.Fatalf("%d datagrams arrived twice", dups)
	}
	requireNoNonceReuse(t, withoutInjected(capt.stop(), injected))
}

// withoutInjected removes one captured copy of each packet the test sent
// itself.
func withoutInjected(pkts, injected []dataPacket) []dataPacket {
	type key struct {
		receiver uint32
		counter  uint64
	}
	skip := map[key]int{}
	for _, p := range injected {
		skip[key{p.Receiver, p.Counter}]++
	}
	var out []dataPacket
	for i := len(pkts) - 1; i >= 0; i-- { // the injected copy is the later one
		k := key{pkts[i].Receiver, pkts[i].Counter}
		if skip[k] > 0 {
			skip[k]--
			continue
		}
		out = append(out, pkts[i])
	}
	return out
}
