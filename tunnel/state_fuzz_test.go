package tunnel

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
)

// FuzzRestoreState feeds arbitrary saved states (state.go's framing around
// session snapshots) to a starting device whose listen port is taken, so
// each input restores and is then zeroed, as a failed start does. Nothing
// may panic; the summary may not claim more than b's one peer can hold
// (three keypairs, one ticket); no restored key outlives the failed start;
// and the state b really saved restores its session every time.
func FuzzRestoreState(f *testing.F) {
	p := newPair(f, nil)
	ping := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("ping"))
	p.a.tun.toTunnel <- ping
	p.b.expect(f, ping)
	genuine, err := p.b.dev.CloseAndSave()
	if err != nil || len(genuine) < 8 {
		f.Fatalf("no state saved: %d bytes, %v", len(genuine), err)
	}
	f.Add(genuine)
	f.Add(genuine[:len(genuine)-1])
	twice := binary.LittleEndian.AppendUint32(nil, 2) // the one entry, twice
	twice = append(append(twice, genuine[4:]...), genuine[4:]...)
	f.Add(twice)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	bind := busyBind{p.net.bind(p.b.under)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, state []byte) {
		d, err := start(p.b.cfg, Options{TUN: newMemTUN(), Bind: bind, Now: p.clock.Now, TickInterval: -1,
			Logger: log, RestoreState: bytes.Clone(state)})
		if err == nil || d == nil {
			t.Fatalf("start on a taken port: device %v, err %v", d, err)
		}
		sum := d.Restored()
		if sum.Peers > 1 || sum.Tickets > 1 || sum.Sessions > 3*sum.Peers || (sum.Sessions == 0) != (sum.Peers == 0) {
			t.Fatalf("restored more than one peer can hold: %s", sum)
		}
		if bytes.Equal(state, genuine) && sum.Sessions != 1 {
			t.Fatalf("the state b saved restored %s", sum)
		}
		for _, peer := range d.peers.Load().list {
			if n := len(keypairsOf(peer)); n != 0 {
				t.Fatalf("%d restored keypairs outlived the failed start", n)
			}
		}
	})
}
