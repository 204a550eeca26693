package netnstests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"stunnel/internal/netns"
)

// Nonce-reuse capture: tcpdump records every transport-data packet (type 4)
// crossing an underlay interface, in both directions, and
// requireNoNonceReuse checks that no (receiver index, counter) pair appears
// twice: a sender that sealed one counter twice under a key (a restored
// state used twice, a counter saved short) shows up as such a pair. The
// receiver index names the session (and so the key) on the wire; a new
// session draws a fresh random index, so two keys sharing one is a 2^-32
// accident.
//
// Use on an interface with offloads off (lab.noOffloads on both veth ends),
// or the capture sees GSO super-packets of which only the first datagram's
// header is visible.

// dataPacket is one captured transport-data packet.
type dataPacket struct {
	At       time.Time
	Src, Dst netip.AddrPort
	Receiver uint32 // receiver index, as on the wire (little-endian)
	Counter  uint64
	Len      int // UDP payload length as sent (keepalive: 32)
}

func (p dataPacket) String() string {
	return fmt.Sprintf("%s %s -> %s receiver %#08x counter %d len %d",
		p.At.Format("15:04:05.000000"), p.Src, p.Dst, p.Receiver, p.Counter, p.Len)
}

// dataCapture is a running tcpdump; stop returns what it saw.
type dataCapture struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    lockedBuffer // pcap stream, written by exec's copier
	stderr readyWriter
	exited chan error // Wait's result, once
	once   sync.Once
	pkts   []dataPacket
}

// lockedBuffer is a bytes.Buffer that exec's copier writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (w *lockedBuffer) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// countSoFar returns how many data packets tcpdump has written so far (it
// writes each at once: -U), for waiting on a condition without stopping.
func (c *dataCapture) countSoFar() int {
	pkts, _ := parseDataPcap(c.out.Bytes())
	return len(pkts)
}

// readyWriter keeps tcpdump's stderr and closes ready at "listening on".
type readyWriter struct {
	mu    sync.Mutex // guards buf and seen; exec's copier writes, the test reads
	buf   bytes.Buffer
	seen  bool
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && strings.Contains(w.buf.String(), "listening on") {
		w.seen = true
		close(w.ready)
	}
	return len(p), nil
}

func (w *readyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startDataCapture runs tcpdump on ifname in ns and returns once it is
// capturing. Cleanup stops it even if the test never calls stop.
func startDataCapture(t *testing.T, ns, ifname string) *dataCapture {
	t.Helper()
	c := &dataCapture{t: t}
	// -U: packet-buffered, -s 128: headers are enough, -Z root: no
	// privilege drop that would fail on our files, -w -: pcap on stdout.
	c.cmd = exec.Command("ip", "netns", "exec", ns, "tcpdump", "-i", ifname, "-n", "-U", "-s", "128",
		"-Z", "root", "--immediate-mode", "-w", "-", "udp")
	c.cmd.Stdout = &c.out
	// As the daemons: a test binary killed by its timeout runs no
	// cleanup, and tcpdump must not outlive it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.stderr.ready = make(chan struct{})
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting tcpdump in %s: %v (is tcpdump installed?)", ns, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	c.exited = exited
	t.Cleanup(func() { c.stop() })
	select {
	case <-c.stderr.ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("tcpdump on %s in %s did not start: %v: %s", ifname, ns, err, c.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump on %s in %s not capturing after 10 s: %s", ifname, ns, c.stderr.String())
	}
	return c
}

// stop ends the capture (SIGINT, so tcpdump flushes) and returns every
// transport-data packet it recorded, in capture order. Idempotent.
func (c *dataCapture) stop() []dataPacket {
	c.t.Helper()
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
			c.t.Errorf("tcpdump did not stop on SIGINT; killed")
		}
		pkts, err := parseDataPcap(c.out.Bytes())
		if err != nil {
			c.t.Errorf("reading tcpdump's capture: %v", err)
		}
		c.pkts = pkts
	})
	return c.pkts
}

// parseDataPcap reads a classic pcap stream (Ethernet, Linux cooked or raw
// IP) and returns its transport-data packets. A stream cut inside the last
// record (tcpdump killed) ends the list without an error.
func parseDataPcap(b []byte) ([]dataPacket, error) {
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap stream of %d bytes has no header", len(b))
	}
	var bo binary.ByteOrder
	nano := false
	switch m := binary.LittleEndian.Uint32(b); m {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo, nano = binary.LittleEndian, m == 0xa1b23c4d
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo, nano = binary.BigEndian, m == 0x4d3cb2a1
	default:
		return nil, fmt.Errorf("not a pcap stream (magic %#x)", m)
	}
	link := bo.Uint32(b[20:])
	var out []dataPacket
	for b = b[24:]; len(b) >= 16; {
		sec, frac, incl := bo.Uint32(b), bo.Uint32(b[4:]), int(bo.Uint32(b[8:]))
		if len(b) < 16+incl {
			break
		}
		frame := b[16 : 16+incl]
		b = b[16+incl:]
		ns := int64(frac) * 1000
		if nano {
			ns = int64(frac)
		}
		var ip []byte
		switch link {
		case 1: // Ethernet
			if len(frame) < 14 {
				continue
			}
			et := binary.BigEndian.Uint16(frame[12:])
			if et != 0x0800 && et != 0x86dd {
				continue
			}
			ip = frame[14:]
		case 113: // Linux cooked
			if len(frame) < 16 {
				continue
			}
			ip = frame[16:]
		case 101, 12: // raw IP
			ip = frame
		default:
			return nil, fmt.Errorf("pcap link type %d not handled", link)
		}
		if p, ok := parseDataIP(ip); ok {
			p.At = time.Unix(int64(sec), ns)
			out = append(out, p)
		}
	}
	return out, nil
}

// parseDataIP recognises an IPv4 or IPv6 UDP packet carrying a
// transport-data message (header 04 01 00 00, at least 32 bytes).
func parseDataIP(ip []byte) (dataPacket, bool) {
	var p dataPacket
	var udp []byte
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4 && ip[9] == 17:
		ihl := int(ip[0]&0x0f) * 4
		if len(ip) < ihl+8 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 { // skip non-first fragments
			return p, false
		}
		udp = ip[ihl:]
		p.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp))
		p.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
	case len(ip) >= 48 && ip[0]>>4 == 6 && ip[6] == 17:
		udp = ip[40:]
		p.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), binary.BigEndian.Uint16(udp))
		p.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), binary.BigEndian.Uint16(udp[2:]))
	default:
		return p, false
	}
	msg := udp[8:]
	p.Len = int(binary.BigEndian.Uint16(udp[4:])) - 8
	if len(msg) < 16 || p.Len < 32 || msg[0] != 4 || msg[1] != 1 || msg[2] != 0 || msg[3] != 0 {
		return p, false
	}
	p.Receiver = binary.LittleEndian.Uint32(msg[4:])
	p.Counter = binary.LittleEndian.Uint64(msg[8:])
	return p, true
}

// nonceReuse returns, for every (receiver index, counter) pair captured more
// than once, the packets that carry it, sorted by receiver and counter.
func nonceReuse(pkts []dataPacket) [][]dataPacket {
	type key struct {
		r uint32
		c uint64
	}
	seen := map[key][]dataPacket{}
	for _, p := range pkts {
		k := key{p.Receiver, p.Counter}
		seen[k] = append(seen[k], p)
	}
	var dups [][]dataPacket
	for _, ps := range seen {
		if len(ps) > 1 {
			dups = append(dups, ps)
		}
	}
	sort.Slice(dups, func(i, j int) bool {
		if dups[i][0].Receiver != dups[j][0].Receiver {
			return dups[i][0].Receiver < dups[j][0].Receiver
		}
		return dups[i][0].Counter < dups[j][0].Counter
	})
	return dups
}

// requireNoNonceReuse fails t, listing the first reuses, if any (receiver
// index, counter) pair appears twice, and logs how many packets and
// sessions (receiver indices) the capture held.
func requireNoNonceReuse(t *testing.T, pkts []dataPacket) {
	t.Helper()
	receivers := map[uint32]int{}
	for _, p := range pkts {
		receivers[p.Receiver]++
	}
	t.Logf("nonce capture: %d data packets under %d receiver indices", len(pkts), len(receivers))
	dups := nonceReuse(pkts)
	if len(dups) == 0 {
		return
	}
	var sb strings.Builder
	for i, d := range dups {
		if i == 10 {
			fmt.Fprintf(&sb, "... and %d more\n", len(dups)-10)
			break
		}
		for _, p := range d {
			fmt.Fprintf(&sb, "  %s\n", p)
		}
	}
	t.Fatalf("%d (receiver index, counter) pairs sealed more than once (nonce reuse):\n%s", len(dups), sb.String())
}

// TestNonceCaptureFindsReuse checks the helper itself: of crafted datagrams,
// one (receiver, counter) pair sent twice is reported, the same counter
// under another receiver and non-data messages are not.
func TestNonceCaptureFindsReuse(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("nca"), l.ns("ncb")
	l.veth(a, "u0", "198.18.210.1/24", b, "u0", "198.18.210.2/24")
	l.noOffloads(a, "u0")
	l.noOffloads(b, "u0")
	capt := startDataCapture(t, b, "u0")

	data := func(receiver uint32, counter uint64) []byte {
		m := make([]byte, 32)
		m[0], m[1] = 4, 1
		binary.LittleEndian.PutUint32(m[4:], receiver)
		binary.LittleEndian.PutUint64(m[8:], counter)
		return m
	}
	var msgs [][]byte
	for c := range uint64(10) {
		msgs = append(msgs, data(0x11, c))
	}
	msgs = append(msgs, data(0x11, 5), data(0x22, 5))
	initiation := make([]byte, 148)
	initiation[0], initiation[1] = 1, 1
	msgs = append(msgs, initiation, data(0x11, 5)[:20]) // not data: ignored
	err := netns.Do(a, func() error {
		// Unconnected: B's port unreachable replies must not fail later writes.
		c, err := net.ListenPacket("udp4", "198.18.210.1:0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.IPv4(198, 18, 210, 2), Port: 51820}
		for _, m := range msgs {
			if _, err := c.WriteTo(m, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "12 data packets captured", func() bool {
		return capt.countSoFar() >= 12
	})
	pkts := capt.stop()
	if len(pkts) != 12 {
		t.Fatalf("captured %d data packets, want 12: %v", len(pkts), pkts)
	}
	if p := pkts[0]; p.Src.Addr() != netip.MustParseAddr("198.18.210.1") || p.Dst.Port() != 51820 || p.Len != 32 {
		t.Fatalf("first packet parsed as %s", p)
	}
	dups := nonceReuse(pkts)
	if len(dups) != 1 || len(dups[0]) != 2 || dups[0][0].Receiver != 0x11 || dups[0][0].Counter != 5 {
		t.Fatalf("nonceReuse = %v; want exactly receiver 0x11 counter 5, twice", dups)
	}
	requireNoNonceReuse(t, pkts[:10])
}
