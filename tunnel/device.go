// Package tunnel is the data plane: packets from the TUN device are routed to
// a peer by destination (cryptokey routing), sealed under that peer's current
// key and sent over UDP; datagrams from UDP are matched to a key by receiver
// index, opened, checked against replay and the peer's allowed_ips, and
// written to the TUN device.
//
// The packet path, top to bottom (send.go, receive.go):
//
//	TUN reader ──batch per peer──▶ peer.sendQueue (in order) ──▶ peer sender ──▶ UDP
//	             └──────────────▶ encrypt workers (any core) ──┘ (waits for its batch)
//	UDP readers ─batch per key───▶ peer.recvQueue (in order) ──▶ peer receiver ─▶ TUN
//	             └──────────────▶ decrypt workers (any core) ──┘ (replay check here)
//
// Batches carry a mutex held until a worker has sealed or opened them, so
// crypto runs on every core while each peer's packets keep their order.
// When a peer has nothing in flight, the reader runs the whole stage for a
// batch itself (dispatchOut, dispatchIn): no hand-off for a lone packet,
// and on two cores for any batch (inlineLimit). A UDP reader that has
// just written to the TUN also sends what the kernel answered at once (an
// echo reply, a TCP ACK) when no one else is reading the TUN
// (pickUpReplies), so a round trip wakes one thread less. Handshake
// messages go to a bounded queue served by handshake workers
// (handshake.go); timers run from one ticker (timers.go).
//
// The devices are ours on Linux (tundev: TUN with TSO/GRO offloads;
// udpbind: UDP with GSO/GRO), behind wireguard-go's tun.Device and
// conn.Bind interfaces so tests can run on in-memory ones.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/session"
	"stunnel/tickets"
	"stunnel/tunnel/allowedips"
)

// Options are the devices and the injectable clock and randomness the data
// plane runs on; tests pass in-memory devices and a fake clock.
type Options struct {
	TUN    tun.Device
	Bind   conn.Bind
	Logger *slog.Logger
	// Now is the clock for every timer and key lifetime (nil: time.Now).
	Now func() time.Time
	// Rand feeds handshakes (nil: crypto/rand).
	Rand io.Reader
	// Resolve turns an endpoint host:port into an address (nil: the system
	// resolver, preferring IPv4). It runs in the background, never under a
	// lock of the packet path; ctx ends when the device closes.
	Resolve func(ctx context.Context, hostport string) (netip.AddrPort, error)
	// HandshakeLoad is the number of queued handshake messages above which
	// the interface is "under load" and answers initiations without a valid
	// mac2 with a cookie (0: 1/8 of the queue).
	HandshakeLoad int
	// InlineLimit overrides inlineLimit (0: by the number of CPUs; negative:
	// never, so tests can send every batch through the crypto workers).
	InlineLimit int
	// TickInterval: 0 runs the timers at their deadlines only
	// (schedule.go); positive also walks every peer at this interval;
	// negative runs no timers (the test calls tick itself).
	TickInterval time.Duration
	// QuietStart keeps peers from handshaking at start (startPeers): for
	// tests that drive every handshake themselves, packet by packet.
	QuietStart bool
	// RestoreState is a state saved by CloseAndSave (and taken from the
	// state file), restored before anything is sent; nil: none.
	RestoreState []byte
	// RestoreTicketsOnly: RestoreState was saved while running (the state
	// file's CleanStop is false), so only its tickets are restored, never a
	// keypair: its counters went on being used after it was taken.
	RestoreTicketsOnly bool
	// Tickets is the ticket-key ring for session resumption ([tickets]):
	// it issues tickets to our initiators and opens theirs. nil: no
	// resumption, neither as responder nor as initiator.
	Tickets *tickets.Ring

	// StaticKey is this host's static key when the config holds none: a
	// key in a PKCS#11 token (cfg.Interface.PKCS11), opened by the caller,
	// who closes it after the device. nil: cfg.Interface.PrivateKey.
	StaticKey handshake.StaticKey

	// afterLookup, tests only, runs at the end of every LookupPeer (see
	// Device.afterLookup).
	afterLookup func(peerID string)
}

// Device is one running tunnel interface.
type Device struct {
	log     *slog.Logger
	now     func() time.Time
	epoch   time.Time // now() at start: the origin of times kept as integers (failover.go)
	tun     tun.Device
	ready   readyTUN // tun's readiness, or nil; asserted once by start, not per packet
	bind    conn.Bind
	port    uint16
	name    string
	resolve func(context.Context, string) (netip.AddrPort, error)
	warn    *rateLimitedLog
	ctx     context.Context // ends at Close: background lookups give up
	cancel  context.CancelFunc
	errc    chan error // the first fatal error of a reader (Failed)

	// Identity and handshake machinery: fixed for the device's life
	// (a reload that changes [interface] keys needs a restart).
	peerID     string
	host       *session.Host // identity, responder and [session] policy, shared by all peers' sessions
	ticketRing *tickets.Ring // nil: no resumption; rotated by the schedule
	sched      *schedule     // runs the timers; nil when the test calls tick
	cookies    *handshake.CookieChecker
	// limiter is the per-source token bucket of mac2-proven initiations:
	// each one under load is charged to it once, at the intake or else at
	// the worker (see "Who charges the token buckets" in hsqueue.go). Safe
	// for concurrent use.
	limiter *handshake.RateLimiter
	// cookieLimiter bounds the cookie replies each source gets under load;
	// unproven initiations pay it, never limiter (hsqueue.go). Safe for
	// concurrent use.
	cookieLimiter *handshake.RateLimiter
	load          *handshake.LoadMonitor
	handshakeQ    chan handshakeMessage
	// handshakePrioQ holds initiations that proved a cookie (mac2) under
	// load, each already charged to limiter at the intake (see hsqueue.go).
	handshakePrioQ chan handshakeMessage

	// peers is the current configuration's peer set. It is replaced whole on
	// reload (copy on write) and read without locks on the packet path.
	peers atomic.Pointer[peerSet]
	// reloadMu serializes Reload and Close.
	reloadMu sync.Mutex
	// endpoints lists the peers by their current endpoint's address, for
	// the intake of cookie replies (takeCookie); its lock, and who writes
	// it, are documented in endpointindex.go.
	endpoints endpointIndex

	indices     *indexTable
	batch       int // the larger of the TUN's and the bind's batch size
	inlineLimit int // batches up to this size skip the workers when they can (dispatchOut)
	// tunOut is held by whoever reads the TUN (readTUN, or a UDP reader in
	// pickUpReplies) from the read until its packets are sent or queued,
	// so they go out in the order they were read. Only for a readyTUN.
	tunOut   sync.Mutex
	pool     *bufferPool
	encryptQ chan *outBatch
	decryptQ chan *inBatch

	drops          dropCounters
	refusals       refusalLog
	resumeRefusals reasonCounts   // resumptions refused, by reason (also those no peer can be named for)
	restored       RestoreSummary // what RestoreState brought back; immutable after New
	// afterLookup (Options.afterLookup; nil but in tests) runs after
	// LookupPeer has answered the responder, on the handshake worker: a
	// reload there comes between the responder's lookup and its use of the
	// answer, a race a test cannot otherwise hit. Set by New, read only.
	afterLookup func(peerID string)

	// Shutdown, in Close's order: closed stops the readers, the ticker and
	// the handshake workers (wg); then every peer stops while the crypto
	// workers still finish what the peers wait for; then workersQuit stops
	// the crypto workers (workers), and background lookups (background) are
	// waited for last.
	closed    chan struct{}
	closeOnce sync.Once
	// failoverKick (buffered 1) wakes runFailover after a reload, so it
	// re-plans its sleep for the new peers. Sent to without blocking.
	failoverKick chan struct{}
	wg           sync.WaitGroup
	workersQuit  chan struct{}
	workers      sync.WaitGroup
	background   sync.WaitGroup
}

// peerSet is one configuration's peers and routes; immutable once published.
type peerSet struct {
	list   []*Peer
	byID   map[string]*Peer
	routes *allowedips.Table[*Peer]
}

const (
	handshakeQueueLen = 1024
	batchQueueLen     = 16 // batches in flight per worker queue and per peer queue
	// smallBatch is the largest batch a reader seals or opens itself when
	// the peer has nothing in flight, on a machine with cores to spare for
	// the workers (see inlineLimit).
	smallBatch = 8
	// maxReadFailures consecutive read errors end the tunnel (Failed)
	// instead of a busy loop on a device that is gone.
	maxReadFailures = 32
)

// inlineLimit decides who does a batch's crypto when the peer has nothing
// in flight. The TUN reader and the UDP readers already keep a core busy
// each under load; with no more cores than that, a hand-off to a worker
// only adds wake-ups and batches in flight (memory), so the reader seals or
// opens every batch itself. Measured on 2 cores, one TCP stream through two
// namespaced hosts, three alternated runs each: 2.18-2.32 Gbit/s and 16-18
// MiB peak RSS with every batch inline, 1.92-2.27 Gbit/s and 68 MiB with
// only batches of up to 8 inline. With more cores, big batches go to the
// workers so one flow's crypto spreads over them.
func inlineLimit(cpus int) int {
	if cpus <= 2 {
		return math.MaxInt
	}
	return smallBatch
}

// bufferLimit is how many 64 KiB buffers may exist: the read vectors of the
// TUN reader and both UDP readers, a few batches in flight each way, and
// each peer's pending queue. Past it, readers wait (back-pressure); memory
// stays bounded by this number whatever the load.
func bufferLimit(batch, peers int) int {
	return 3*batch + 2*4*batch + pendingQueueLen*peers
}

// New starts a tunnel on the given devices for a validated configuration.
// The caller has already set up the TUN device's addresses and routes.
// When it fails, every key it took in (the private key, the peers' PSKs,
// sessions and tickets restored from Options.RestoreState) is zeroed.
func New(cfg *conf.Config, opt Options) (*Device, error) {
	d, err := start(cfg, opt)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// start is New. When it fails after the keys were taken in, it also returns
// the device it zeroed (for tests; New drops it).
func start(cfg *conf.Config, opt Options) (*Device, error) {
	d := &Device{
		log:          opt.Logger,
		now:          opt.Now,
		tun:          opt.TUN,
		bind:         opt.Bind,
		resolve:      opt.Resolve,
		afterLookup:  opt.afterLookup,
		peerID:       cfg.Interface.PeerID,
		indices:      newIndexTable(),
		handshakeQ:   make(chan handshakeMessage, handshakeQueueLen),
		encryptQ:     make(chan *outBatch, batchQueueLen),
		decryptQ:     make(chan *inBatch, batchQueueLen),
		closed:       make(chan struct{}),
		failoverKick: make(chan struct{}, 1),
		workersQuit:  make(chan struct{}),
		errc:         make(chan error, 1),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.ready, _ = d.tun.(readyTUN)
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.epoch = d.now()
	if d.resolve == nil {
		d.resolve = resolveUDP
	}
	d.name = cfg.Interface.Name
	d.warn = newRateLimitedLog(d.log, d.now)
	policy := policyFrom(cfg)
	if err := policy.Validate(); err != nil {
		return nil, fmt.Errorf("[session]: %w", err)
	}
	if err := checkStaticKey(cfg, opt); err != nil {
		return nil, err
	}
	hsConfig := &handshake.Config{
		PeerID:     []byte(cfg.Interface.PeerID),
		PrivateKey: cfg.Interface.PrivateKey,
		Static:     opt.StaticKey,
		Cipher:     cfg.Session.Cipher,
		Peers:      d,
		Now:        d.now,
		Rand:       opt.Rand,
	}
	d.host = session.NewHost(hsConfig, policy)
	if err := peerWithOwnKey(cfg, d.host.PublicKey()); err != nil {
		d.cancel()
		d.zeroDeviceSecrets() // the host's copy of the private key
		return nil, err
	}
	d.host.SetLogger(d.log)
	if opt.Tickets != nil {
		d.ticketRing = opt.Tickets
		d.host.SetTickets(opt.Tickets, true, opt.Tickets.ReauthAfter())
	}
	d.cookies = handshake.NewCookieChecker(d.host.PublicKey(), d.now, opt.Rand)
	d.limiter = handshake.NewRateLimiter(d.now)
	d.cookieLimiter = handshake.NewRateLimiter(d.now)
	d.handshakePrioQ = make(chan handshakeMessage, priorityQueueLen)
	threshold := opt.HandshakeLoad
	if threshold <= 0 {
		threshold = handshakeQueueLen / 8
	}
	d.load = handshake.NewLoadMonitor(threshold, d.now)

	d.batch = max(d.tun.BatchSize(), d.bind.BatchSize())
	d.pool = newBufferPool(bufferLimit(d.batch, len(cfg.Peers)))

	set := d.buildPeerSet(cfg, nil)
	d.peers.Store(set)
	if opt.RestoreState != nil {
		d.restored = d.restoreState(opt.RestoreState, !opt.RestoreTicketsOnly)
	}

	fns, port, err := d.bind.Open(uint16(cfg.Interface.ListenPort))
	if err != nil {
		// buildPeerSet may have started DNS lookups (background): they
		// end with ctx, see the device closed (no "will retry", no
		// initiation) and are waited for, so nothing of the failed device
		// runs on after New returns, nor touches the keys zeroed below.
		d.closeOnce.Do(func() { close(d.closed) })
		d.cancel()
		d.background.Wait()
		d.zeroFailedStart(set.list)
		return d, listenError(cfg.Interface.ListenPort, err)
	}
	d.port = port

	workers := runtime.NumCPU()
	d.inlineLimit = inlineLimit(workers)
	if opt.InlineLimit != 0 {
		d.inlineLimit = max(opt.InlineLimit, 0)
	}
	for range workers {
		d.workers.Add(2)
		go func() { defer d.workers.Done(); d.encryptWorker() }()
		go func() { defer d.workers.Done(); d.decryptWorker() }()
		d.goroutine(d.handshakeWorker)
	}
	d.goroutine(d.priorityHandshakeWorker)
	for _, fn := range fns {
		d.goroutine(func() { d.readUDP(fn) })
	}
	d.goroutine(d.readTUN)
	if opt.TickInterval >= 0 {
		d.sched = newSchedule(d, opt.TickInterval)
		d.goroutine(d.sched.run)
		d.goroutine(d.runFailover)
	}
	for _, p := range set.list {
		p.start()
	}
	d.log.Info("tunnel up", "interface", d.name, "peer_id", d.peerID, "public_key", d.host.PublicKey().String(),
		"listen_port", d.port, "peers", len(set.list))
	if !opt.QuietStart {
		d.startPeers(set.list)
	}
	return d, nil
}

func (d *Device) goroutine(f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// Port is the UDP port the tunnel listens on.
func (d *Device) Port() uint16 { return d.port }

// Close stops every goroutine, zeroes all session keys and closes the
// devices. It returns once nothing of the tunnel runs any more.
func (d *Device) Close() error { return d.close(nil) }

// close is Close with a hook that runs after every peer stopped sealing and
// opening and before their keys are zeroed (CloseAndSave).
func (d *Device) close(stopped func()) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	var err error
	d.closeOnce.Do(func() {
		close(d.closed)
		d.cancel()
		d.pool.Close()
		err = errors.Join(d.tun.Close(), d.bind.Close())
		d.wg.Wait()
		list := d.peers.Load().list
		for _, p := range list {
			p.stop()
		}
		d.endpoints.clear()
		if stopped != nil {
			stopped()
		}
		for _, p := range list {
			p.clearSessions()
		}
		close(d.workersQuit)
		d.workers.Wait()
		d.background.Wait()
		for _, p := range d.peers.Load().list {
			p.zeroSecrets()
		}
		d.zeroDeviceSecrets()
		d.log.Info("tunnel down", "interface", d.name)
	})
	return err
}

// Restored says what Options.RestoreState brought back.
func (d *Device) Restored() RestoreSummary { return d.restored }

// Failed delivers the error that stopped the tunnel from working, such as
// its TUN device vanishing; the daemon then exits with a runtime failure.
func (d *Device) Failed() <-chan error { return d.errc }

func (d *Device) fail(err error) {
	select {
	case d.errc <- err:
	default:
	}
}

func (d *Device) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// LookupPeer lets the handshake responder find a peer's keys by the ID it
// claims (handshake.PeerLookup), from the current configuration.
func (d *Device) LookupPeer(peerID []byte) (handshake.PeerInfo, error) {
	p := d.peers.Load().byID[string(peerID)]
	if d.afterLookup != nil {
		defer d.afterLookup(string(peerID))
	}
	if p == nil {
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	}
	return handshake.PeerInfo{PublicKey: p.sess.PublicKey(), PresharedKey: p.sess.PresharedKey()}, nil
}

// policyFrom is conf's derivation (conf.Session.Policy), so that the
// policy New validates is the one check validated.
func policyFrom(cfg *conf.Config) rekey.Policy { return cfg.Session.Policy() }

// resolveUDP resolves host:port with the system resolver (ResolveWith).
func resolveUDP(ctx context.Context, hostport string) (netip.AddrPort, error) {
	return ResolveWith(ctx, net.DefaultResolver, hostport)
}

// ResolveWith resolves an endpoint's host:port through res, preferring
// IPv4 like most deployments expect; a literal address needs no lookup.
// The daemon passes a resolver whose sockets carry the full tunnel's mark.
func ResolveWith(ctx context.Context, res *net.Resolver, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", portText, err)
	}
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s has no address", host)
	}
	best := addrs[0].Unmap()
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a.Unmap()
			break
		}
	}
	return netip.AddrPortFrom(best, uint16(port)), nil
}
