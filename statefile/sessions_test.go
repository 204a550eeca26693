package statefile

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/replay"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// liveKeypair is a keypair that sent n packets and received counters 0..n-1.
func liveKeypair(t testing.TB, c handshake.Cipher, created time.Time, n uint64) *rekey.Keypair {
	t.Helper()
	sk, rk := new([32]byte), new([32]byte)
	copy(sk[:], bytes.Repeat([]byte{byte(n) + 1}, 32))
	copy(rk[:], bytes.Repeat([]byte{byte(n) + 2}, 32))
	send, err := handshake.NewAEAD(c, sk)
	if err != nil {
		t.Fatal(err)
	}
	recv, _ := handshake.NewAEAD(c, rk)
	k := rekey.NewKeypair(send, recv, sk, rk, uint32(n)+10, uint32(n)+20, [32]byte{byte(n)}, created, true, rekey.DefaultPolicy())
	now := created.Add(time.Second)
	for range n {
		k.NextNonce(now)
	}
	for c := range n {
		k.AcceptCounter(c, now)
	}
	return k
}

func retire(t testing.TB, k *rekey.Keypair) *rekey.KeypairState {
	t.Helper()
	s, err := k.Retire()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSessionsSaveTakeRestore(t *testing.T) {
	p := rekey.DefaultPolicy()
	old := t0.Add(-p.RejectAfterTime) // already expired at t0+1m
	in := &Sessions{Peers: []PeerSessions{
		{
			Peer:     handshake.PublicKey{1},
			Cipher:   handshake.CipherAES256GCM,
			Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"),
			Keypairs: [3]*rekey.KeypairState{
				SlotPrevious: retire(t, liveKeypair(t, handshake.CipherAES256GCM, old, 3)),
				SlotCurrent:  retire(t, liveKeypair(t, handshake.CipherAES256GCM, t0, 100)),
			},
			Ticket: []byte("ticket"),
			Extra:  []byte{1, 2, 3},
		},
		{Peer: handshake.PublicKey{2}, Cipher: handshake.CipherChaCha20Poly1305,
			Endpoint: netip.MustParseAddrPort("[fd00::2]:4000"),
			Keypairs: [3]*rekey.KeypairState{SlotNext: retire(t, liveKeypair(t, handshake.CipherChaCha20Poly1305, t0, 7))}},
		{Peer: handshake.PublicKey{3}}, // roaming, no session: only its ticket would matter
	}}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	in.Zero()
	path := filepath.Join(t.TempDir(), "st0.state")
	key := newKey(t)
	if err := Save(path, key, Payload{Data: b, CleanStop: true}); err != nil {
		t.Fatal(err)
	}
	clear(b)
	got, err := Take(path, key)
	if err != nil || !got.CleanStop {
		t.Fatalf("Take = clean %v, %v", got.CleanStop, err)
	}
	out, err := DecodeSessions(got.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Peers) != 3 || out.Peers[0].Endpoint != netip.MustParseAddrPort("198.18.0.2:51820") ||
		out.Peers[1].Endpoint != netip.MustParseAddrPort("[fd00::2]:4000") || out.Peers[2].Endpoint.IsValid() ||
		string(out.Peers[0].Ticket) != "ticket" || !bytes.Equal(out.Peers[0].Extra, []byte{1, 2, 3}) ||
		out.Peers[1].Cipher != handshake.CipherChaCha20Poly1305 {
		t.Fatalf("decoded %+v", out.Peers)
	}

	now := t0.Add(time.Minute)
	kps, dropped := out.Peers[0].Restore(p, now)
	if kps[SlotPrevious] != nil || len(dropped) != 1 || !errors.Is(dropped[0], rekey.ErrStateExpired) {
		t.Fatalf("expired previous keypair: restored %v, dropped %v", kps[SlotPrevious] != nil, dropped)
	}
	cur := kps[SlotCurrent]
	if cur == nil {
		t.Fatal("current keypair not restored")
	}
	if n, ok := cur.NextNonce(now); !ok || n != 100 {
		t.Fatalf("restored NextNonce = %d, %v; want 100", n, ok)
	}
	for c := range uint64(100) {
		if cur.AcceptCounter(c, now) {
			t.Fatalf("counter %d accepted before the restart is accepted after it", c)
		}
	}
	if out.Peers[0].Keypairs[SlotCurrent].SendKey != ([32]byte{}) {
		t.Fatal("Restore left the saved keys in memory")
	}
	kps, dropped = out.Peers[1].Restore(p, now)
	if kps[SlotNext] == nil || len(dropped) != 0 {
		t.Fatalf("next keypair: %v, dropped %v", kps[SlotNext], dropped)
	}
	if kps, dropped := out.Peers[2].Restore(p, now); kps != [3]*rekey.Keypair{} || dropped != nil {
		t.Fatal("a peer without keypairs restored something")
	}
}

func TestRestoreRefusesUnknownCipher(t *testing.T) {
	ps := PeerSessions{Cipher: handshake.CipherNone,
		Keypairs: [3]*rekey.KeypairState{SlotCurrent: retire(t, liveKeypair(t, handshake.CipherAES256GCM, t0, 1))}}
	if kps, dropped := ps.Restore(rekey.DefaultPolicy(), t0.Add(time.Second)); kps[SlotCurrent] != nil || len(dropped) != 1 {
		t.Fatalf("Restore with no cipher = %v, %v", kps, dropped)
	}
}

func TestDecodeSessionsRefusesDamage(t *testing.T) {
	s := &Sessions{Peers: []PeerSessions{{Peer: handshake.PublicKey{1}, Cipher: 1,
		Endpoint: netip.MustParseAddrPort("198.18.0.2:1"), Ticket: []byte("t"),
		Keypairs: [3]*rekey.KeypairState{SlotCurrent: retire(t, liveKeypair(t, 1, t0, 2))}}}}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for n := range b {
		if _, err := DecodeSessions(b[:n]); !errors.Is(err, ErrSessionsFormat) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := DecodeSessions(append(bytes.Clone(b), 0)); !errors.Is(err, ErrSessionsFormat) {
		t.Fatal("trailing byte accepted")
	}
	huge := []byte{1, 0xff, 0xff, 0xff, 0xff}
	if _, err := DecodeSessions(huge); !errors.Is(err, ErrSessionsFormat) {
		t.Fatal("a peer count the input cannot hold was accepted")
	}
	if _, err := (&Sessions{Peers: []PeerSessions{{Ticket: make([]byte, MaxTicket+1)}}}).Encode(); err == nil {
		t.Fatal("oversized ticket encoded")
	}
}

func FuzzDecodeSessions(f *testing.F) {
	// A small seed (the smallest replay window): the fuzzing engine stalls
	// on the 2 KiB ring of the default window.
	small := &rekey.KeypairState{LocalIndex: 1, RemoteIndex: 2, Created: t0, SendCounter: 5,
		Replay: replay.State{Window: replay.MinWindow, Last: 4, Ring: []uint64{0x1f, 0, 0, 0}}}
	s := &Sessions{Peers: []PeerSessions{{Peer: handshake.PublicKey{1}, Cipher: 1,
		Endpoint: netip.MustParseAddrPort("[fd00::1]:2"), Ticket: []byte("t"), Extra: []byte("e"),
		Keypairs: [3]*rekey.KeypairState{SlotPrevious: small}}, {}}}
	b, _ := s.Encode()
	f.Add(b)
	f.Add([]byte{1, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSessions(b)
		if err != nil {
			if !errors.Is(err, ErrSessionsFormat) {
				t.Fatalf("error %v does not wrap ErrSessionsFormat", err)
			}
			return
		}
		again, err := s.Encode()
		if err != nil {
			t.Fatalf("decoded sessions do not encode: %v", err)
		}
		if _, err := DecodeSessions(again); err != nil {
			t.Fatalf("re-encoded sessions do not decode: %v", err)
		}
		for i := range s.Peers {
			s.Peers[i].Restore(rekey.DefaultPolicy(), t0)
		}
	})
}

// Deterministic mutations of a valid encoding, as a fast regular test
// beside the fuzz target: nothing panics, and whatever decodes re-encodes
// and restores.
func TestDecodeSessionsMutations(t *testing.T) {
	s := &Sessions{Peers: []PeerSessions{{Peer: handshake.PublicKey{1}, Cipher: 1,
		Endpoint: netip.MustParseAddrPort("[fd00::1]:2"), Ticket: []byte("t"), Extra: []byte("e"),
		Keypairs: [3]*rekey.KeypairState{SlotPrevious: retire(t, liveKeypair(t, 1, t0, 2))}}, {}}}
	b, _ := s.Encode()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		c := bytes.Clone(b)
		for range 1 + rng.IntN(4) {
			c[rng.IntN(len(c))] = byte(rng.Uint32())
		}
		c = c[:len(c)-rng.IntN(8)]
		d, err := DecodeSessions(c)
		if err != nil {
			if !errors.Is(err, ErrSessionsFormat) {
				t.Fatalf("error %v does not wrap ErrSessionsFormat", err)
			}
			continue
		}
		again, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeSessions(again); err != nil {
			t.Fatal(err)
		}
		for i := range d.Peers {
			d.Peers[i].Restore(rekey.DefaultPolicy(), t0)
		}
	}
}
