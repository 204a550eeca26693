package tunnel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"stunnel/tunnel/tundev"
)

// planTUN is a memTUN whose Write also runs each batch through the TUN
// device's coalescing planner (tundev.CheckWritePlan, with and without
// USO), as the real device would, and records what it finds wrong.
type planTUN struct {
	*memTUN
	errs chan error
}

func (p *planTUN) Write(bufs [][]byte, offset int) (int, error) {
	pkts := make([][]byte, len(bufs))
	for i, b := range bufs {
		pkts[i] = b[offset:]
	}
	for _, uso := range []bool{false, true} {
		if err := tundev.CheckWritePlan(pkts, uso); err != nil {
			select {
			case p.errs <- fmt.Errorf("uso=%v: %v", uso, err):
			default:
			}
		}
	}
	return p.memTUN.Write(bufs, offset)
}

// innerPackets splits fuzz input into up to memBatch packets: 2-byte
// big-endian length, then the bytes.
func innerPackets(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 && len(out) < memBatch-1 {
		n := min(int(binary.BigEndian.Uint16(data)), len(data)-2, bufferSize-headerLen-tagLen)
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	return out
}

func packInner(pkts ...[]byte) []byte {
	var out []byte
	for _, p := range pkts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	return out
}

// FuzzAuthenticatedInner is what an authenticated peer can send: arbitrary
// inner packets sealed under the real session keys (bad IP headers, lengths
// that disagree, fragments, TSO-sized packets, forged sources), a batch at a
// time, through b's receive path (open, replay, source check against
// allowed_ips) into the TUN device's coalescer. Whatever reaches the TUN
// must be one of the packets sent, cut to its IP header's length, from a
// source alpha may use; the coalescer must give back every packet
// unchanged or merged only when its checksums were right; the tunnel must
// keep working.
func FuzzAuthenticatedInner(f *testing.F) {
	var planned *planTUN
	p := newPairTUN(f, nil, 0, func(m *memTUN) tun.Device {
		planned = &planTUN{memTUN: m, errs: make(chan error, 1)}
		return planned
	})
	ping := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("ping"))
	p.a.tun.toTunnel <- ping
	p.b.expect(f, ping)
	back := ipv4UDP("198.19.0.2", "198.19.0.1", []byte("pong")) // b confirms: a's key is current
	p.b.tun.toTunnel <- back
	p.a.expect(f, back)

	tcp := func(src string, seq uint32, n int) []byte {
		pkt := ipv4UDP(src, "198.19.0.2", make([]byte, n+12))
		pkt[9] = 6
		l4 := pkt[20:]
		binary.BigEndian.PutUint32(l4[4:], seq)
		l4[12], l4[13] = 5<<4, 0x10
		return pkt
	}
	frag := ipv4UDP("198.19.0.1", "198.19.0.2", make([]byte, 100))
	frag[6] = 0x20 // more fragments
	long := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("short"))
	binary.BigEndian.PutUint16(long[2:], 2000) // claims more than it has
	shortLen := ipv4UDP("198.19.0.1", "198.19.0.2", []byte("trailing bytes after the header's length"))
	binary.BigEndian.PutUint16(shortLen[2:], 30)
	v6 := ipv6UDP("fd00::1", "fd00::2", []byte("six"))
	mapped := ipv6UDP("::ffff:198.19.0.1", "fd00::2", []byte("mapped"))
	f.Add(packInner(ping))
	f.Add(packInner(tcp("198.19.0.1", 1, 1000), tcp("198.19.0.1", 1001, 1000), tcp("198.19.0.1", 2001, 1000)))
	f.Add(packInner(tcp("198.19.0.1", 1, 60000)))                              // TSO-sized
	f.Add(packInner(frag, long, shortLen, v6, mapped, []byte{0x45}, []byte{})) // bad headers, keepalive
	f.Add(packInner(tcp("198.19.9.9", 1, 100), ipv4UDP("198.19.0.1", "198.19.0.2", nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts := innerPackets(data)
		now := p.clock.Now()
		beta := p.a.dev.peers.Load().byID["beta"]
		kp := beta.sess.Current(now)
		if kp == nil {
			t.Fatal("a has no current keypair")
		}
		var nonce [12]byte
		for _, inner := range append(pkts, ping) {
			ctr, ok := kp.NextNonce(now)
			if !ok {
				t.Fatal("nonces exhausted")
			}
			msg := make([]byte, headerLen, headerLen+len(inner)+tagLen)
			writeDataHeader(msg, kp.RemoteIndex, ctr)
			putNonce(&nonce, ctr)
			msg = kp.Send.Seal(msg, nonce[:], inner, nil)
			select { // as inject, but a stuck receiver fails instead of hanging
			case p.b.bind.rx <- datagram{from: netip.MustParseAddrPort(p.a.under), data: msg}:
			case <-time.After(5 * time.Second):
				t.Fatalf("b's receiver is stuck: %d pool buffers in use", p.b.dev.pool.inUse())
			}
		}
		// What reaches the TUN is a subsequence of what was sent (each cut
		// to its declared length), then the ping.
		next := 0
		for {
			var got []byte
			select {
			case got = <-p.b.tun.fromTunnel:
			case <-time.After(5 * time.Second):
				t.Fatalf("the ping after %d inner packets never arrived", len(pkts))
			}
			k := next
			for k < len(pkts) && !deliveredAs(pkts[k], got) {
				k++
			}
			if k == len(pkts) {
				if bytes.Equal(got, ping) {
					break
				}
				t.Fatalf("TUN got %x, which is none of the packets sent, in order", got[:min(len(got), 64)])
			}
			src, _, _ := ipSource(got)
			if src != netip.MustParseAddr("198.19.0.1") && src != netip.MustParseAddr("fd00::1") {
				t.Fatalf("a packet from %v reached the TUN", src)
			}
			next = k + 1
		}
		select {
		case err := <-planned.errs:
			t.Fatal(err)
		default:
		}
	})
}

// deliveredAs reports whether got is what the receive path may make of the
// inner packet in: in, cut to the length its IP header declares.
func deliveredAs(in, got []byte) bool {
	_, n, ok := ipSource(in)
	return ok && n <= len(in) && bytes.Equal(in[:n], got)
}
