package hsrate

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"stunnel/handshake"
)

// wgFixture is a wireguard-go responder device ("hub", up, with configured
// peers) and one initiator device per identity (down: they only build
// initiations), wired by a bind that carries nothing.
type wgFixture struct {
	hub      *device.Device
	checker  device.CookieChecker                     // the hub's mac1 check (the device's own is unexported)
	toInit   map[*device.Peer]*device.CookieGenerator // the hub's MACs on responses, per peer
	toHub    device.CookieGenerator                   // the initiators' MACs toward the hub
	inits    [identities]*device.Device
	hubAsPee [identities]*device.Peer // the hub, as each initiator's peer
	turns    turns
}

func wgKey(b *testing.B) (priv, pub [32]byte) {
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	return k, k.PublicKey() // the same X25519 keys as WireGuard's
}

func newWGDevice(b *testing.B, uapi string) *device.Device {
	d := device.NewDevice(tuntest.NewChannelTUN().TUN(), &nullBind{}, device.NewLogger(device.LogLevelSilent, ""))
	b.Cleanup(d.Close)
	if err := d.IpcSet(uapi); err != nil {
		b.Fatalf("wireguard-go IpcSet: %v", err)
	}
	return d
}

func newWGFixture(b *testing.B) *wgFixture {
	b.Helper()
	hubPriv, hubPub := wgKey(b)
	f := &wgFixture{toInit: make(map[*device.Peer]*device.CookieGenerator, identities)}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%s\n", hex.EncodeToString(hubPriv[:]))
	pubs := make([][32]byte, identities)
	for i := range configured {
		priv, pub := wgKey(b)
		fmt.Fprintf(&cfg, "public_key=%s\n", hex.EncodeToString(pub[:]))
		if i < identities {
			pubs[i] = pub
			f.inits[i] = newWGDevice(b, fmt.Sprintf("private_key=%s\npublic_key=%s\n",
				hex.EncodeToString(priv[:]), hex.EncodeToString(hubPub[:])))
			f.hubAsPee[i] = f.inits[i].LookupPeer(hubPub)
		}
	}
	f.hub = newWGDevice(b, cfg.String())
	// Up starts the peers: ConsumeMessageInitiation answers running peers only.
	if err := f.hub.Up(); err != nil {
		b.Fatalf("wireguard-go Up: %v", err)
	}
	for i := range identities {
		p := f.hub.LookupPeer(pubs[i])
		g := new(device.CookieGenerator)
		g.Init(pubs[i])
		f.toInit[p] = g
	}
	f.checker.Init(hubPub)
	f.toHub.Init(hubPub)
	return f
}

// initiation builds identity id's message 1 on the wire, MACs included.
func (f *wgFixture) initiation(b *testing.B, id int) []byte {
	m, err := f.inits[id].CreateMessageInitiation(f.hubAsPee[id])
	if err != nil {
		b.Fatal(err)
	}
	pkt := make([]byte, device.MessageInitiationSize)
	binary.LittleEndian.PutUint32(pkt, m.Type)
	binary.LittleEndian.PutUint32(pkt[4:], m.Sender)
	o := 8 + copy(pkt[8:], m.Ephemeral[:])
	o += copy(pkt[o:], m.Static[:])
	copy(pkt[o:], m.Timestamp[:])
	f.toHub.AddMacs(pkt)
	return pkt
}

// answer is what wireguard-go's RoutineHandshake and SendHandshakeResponse
// do for an initiation that passed its DoS gates, but the timers and the
// send: mac1, unmarshal, consume, response, marshal, MACs, keypair.
func (f *wgFixture) answer(pkt []byte) error {
	if !f.checker.CheckMAC1(pkt) {
		return errors.New("wireguard-go: mac1 refused")
	}
	var m device.MessageInitiation // as msg.unmarshal (unexported)
	m.Type = binary.LittleEndian.Uint32(pkt)
	m.Sender = binary.LittleEndian.Uint32(pkt[4:])
	o := 8 + copy(m.Ephemeral[:], pkt[8:])
	o += copy(m.Static[:], pkt[o:])
	o += copy(m.Timestamp[:], pkt[o:])
	o += copy(m.MAC1[:], pkt[o:])
	copy(m.MAC2[:], pkt[o:])
	peer := f.hub.ConsumeMessageInitiation(&m)
	if peer == nil {
		return errors.New("wireguard-go: initiation refused")
	}
	r, err := f.hub.CreateMessageResponse(peer)
	if err != nil {
		return err
	}
	out := make([]byte, device.MessageResponseSize) // as response.marshal (unexported)
	binary.LittleEndian.PutUint32(out, r.Type)
	binary.LittleEndian.PutUint32(out[4:], r.Sender)
	binary.LittleEndian.PutUint32(out[8:], r.Receiver)
	o = 12 + copy(out[12:], r.Ephemeral[:])
	copy(out[o:], r.Empty[:])
	f.toInit[peer].AddMacs(out)
	return peer.BeginSymmetricSession()
}

func benchWireguardGoFull(b *testing.B) {
	f := newWGFixture(b)
	run(b, &f.turns, func(id int) []byte { return f.initiation(b, id) }, f.answer)
}

// nullBind is a conn.Bind that sends nowhere and receives nothing: its
// receive functions block until Close.
type nullBind struct {
	mu     sync.Mutex
	closed chan struct{} // guarded by mu; nil until Open
}

var _ conn.Bind = (*nullBind)(nil)

type nullEndpoint struct{}

func (nullEndpoint) ClearSrc()           {}
func (nullEndpoint) SrcToString() string { return "" }
func (nullEndpoint) DstToString() string { return "" }
func (nullEndpoint) DstToBytes() []byte  { return nil }
func (nullEndpoint) DstIP() netip.Addr   { return netip.Addr{} }
func (nullEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (n *nullBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := make(chan struct{})
	n.closed = c
	recv := func([][]byte, []int, []conn.Endpoint) (int, error) {
		<-c
		return 0, net.ErrClosed
	}
	return []conn.ReceiveFunc{recv}, port, nil
}

func (n *nullBind) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed != nil {
		close(n.closed)
		n.closed = nil
	}
	return nil
}

func (n *nullBind) SetMark(uint32) error                        { return nil }
func (n *nullBind) Send([][]byte, conn.Endpoint) error          { return nil }
func (n *nullBind) ParseEndpoint(string) (conn.Endpoint, error) { return nullEndpoint{}, nil }
func (n *nullBind) BatchSize() int                              { return 1 }
