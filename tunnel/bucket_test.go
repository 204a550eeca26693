package tunnel

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/fakeclock"
)

// The per-source token bucket charges each initiation once. These tests
// drive the intake (queueHandshake) by hand, on a fake clock, with the
// responder always under load.

// stallLog is a log writer that, once its gate is armed, holds the next
// line written until the gate opens: the worker that logs it stops there,
// and the test can let messages pile up in its queue.
type stallLog struct{ gate *holdGate }

func (s stallLog) Write(b []byte) (int, error) {
	s.gate.hold()
	return len(b), nil
}

// bucketRig is a responder with no peers, always under load, fed by hand.
type bucketRig struct {
	d       *Device
	clock   *fakeclock.Clock
	net     *memNet
	log     *holdGate // of the responder's log (stallLog)
	src     netip.AddrPort
	ep      conn.Endpoint
	gen     *handshake.CookieGenerator // the initiator's side of the cookie
	cookies atomic.Int64               // cookie replies the responder sent to src
	sent    int                        // initiations given to the intake
}

func newBucketRig(t *testing.T) *bucketRig {
	t.Helper()
	r := &bucketRig{clock: newFakeClock(), net: newMemNet(), log: newHoldGate(),
		src: netip.MustParseAddrPort("198.18.0.77:40000")}
	r.ep = &conn.StdNetEndpoint{AddrPort: r.src}
	key := mustKey(t)
	cfg := &conf.Config{
		Path:      "bucket.toml",
		Interface: conf.Interface{Name: "stbk", PeerID: "responder", PrivateKey: key, PublicKey: key.PublicKey(), ListenPort: 51820, MTU: 1420},
	}
	d, err := New(cfg, Options{TUN: newMemTUN(), Bind: r.net.bind("198.18.0.2:51820"), Now: r.clock.Now, TickInterval: -1,
		QuietStart: true, Logger: slog.New(slog.NewTextHandler(stallLog{r.log}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.log.open() // a worker still stalled would keep Close waiting
		d.Close()
	})
	// Set before any message arrives; the workers read it only after
	// receiving one.
	d.load = handshake.NewLoadMonitor(0, r.clock.Now)
	r.d = d
	r.net.filter = func(from, to netip.AddrPort, b []byte) bool {
		if to == r.src && b[0] == handshake.MessageTypeCookieReply {
			r.cookies.Add(1)
		}
		return false
	}
	r.gen = handshake.NewCookieGenerator(key.PublicKey(), r.clock.Now)
	return r
}

// initiation is a fresh initiation-shaped message with a valid mac1, and
// a valid mac2 if the generator holds a cookie. Its body is junk: the
// responder's public-key work refuses it (handshake_failed), which is how
// the test sees that it got past the DoS gates.
func (r *bucketRig) initiation() []byte {
	msg := make([]byte, handshake.InitiationSize)
	msg[0], msg[1] = handshake.MessageTypeInitiation, handshake.ProtocolVersion
	msg[4], msg[5] = byte(r.sent), byte(r.sent>>8) // sender index: each message differs
	r.gen.AddMACs(msg)
	return msg
}

// prove gives the initiator a cookie for its source, as a cookie reply would.
func (r *bucketRig) prove(t *testing.T) {
	t.Helper()
	msg := r.initiation()
	reply, err := r.d.cookies.CreateReply(msg, r.src)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.gen.ConsumeReply(reply); err != nil {
		t.Fatal(err)
	}
}

func (r *bucketRig) send() {
	r.d.queueHandshake(r.initiation(), r.ep)
	r.sent++
}

// settled waits until every initiation sent was either refused by the
// bucket or answered with a cookie (at the intake) or reached the
// responder's public-key work, and returns the three counts.
func (r *bucketRig) settled(t *testing.T) (limited, cookies, reached uint64) {
	t.Helper()
	waitFor(t, 5*time.Second, "every initiation to be accounted for", func() bool {
		limited = r.d.drops[dropRateLimited].Load()
		cookies = uint64(r.cookies.Load())
		reached = r.d.drops[dropHandshakeFailed].Load()
		return limited+cookies+reached == uint64(r.sent)
	})
	return limited, cookies, reached
}

// interval is the spacing of initiations at exactly the allowed rate.
const interval = time.Second / handshake.RateLimitPerSecond

// A proven source that sends at exactly its allowed rate is never refused,
// also when its initiations reach the worker in a bunch: the worker was
// busy (here: stalled in a log line) while they arrived, and takes them all
// at one instant. Charged again there, the bunch would overdraw the bucket.
func TestProvenSourceAtItsRateIsNotRefusedWhenBunched(t *testing.T) {
	r := newBucketRig(t)
	r.prove(t)
	r.log.arm()
	r.send() // the worker takes it and stalls logging its failure
	r.log.waitEntered(t, 5*time.Second, "the priority worker never took the first initiation")
	bunch := 2 * handshake.RateLimitBurst // more than one burst's worth
	for range bunch {
		r.clock.Advance(interval)
		r.send()
	}
	r.log.open() // the worker takes the bunch at one instant
	limited, cookies, reached := r.settled(t)
	if limited != 0 || cookies != 0 {
		t.Fatalf("of %d initiations at the allowed rate: %d refused as rate_limited, %d answered with a cookie, %d processed; want all processed",
			r.sent, limited, cookies, reached)
	}
}

// The flood protection stays: a source at twice its rate is refused beyond
// its bucket, whether it proved its address (the rest go to the public-key
// work) or not (the rest get cookie replies, and none goes further).
func TestSourceOverItsRateIsRefused(t *testing.T) {
	for _, proven := range []bool{true, false} {
		t.Run(map[bool]string{true: "proven", false: "unproven"}[proven], func(t *testing.T) {
			r := newBucketRig(t)
			if proven {
				r.prove(t)
			}
			const n = 40
			for i := range n {
				if i > 0 {
					r.clock.Advance(interval / 2)
				}
				r.send()
			}
			limited, cookies, reached := r.settled(t)
			// The bucket allows a burst, then one per interval elapsed.
			allowed := uint64(handshake.RateLimitBurst) + uint64((n-1)/2)
			admitted := reached
			if !proven {
				admitted = cookies
				if reached != 0 {
					t.Fatalf("%d unproven initiations reached the public-key work under load", reached)
				}
			} else if cookies != 0 {
				t.Fatalf("%d proven initiations answered with a cookie", cookies)
			}
			if admitted > allowed || limited < n-allowed {
				t.Fatalf("at twice the rate: %d admitted, %d refused; want at most %d admitted", admitted, limited, allowed)
			}
		})
	}
}

// Forged initiations from a victim's address cannot lock the victim out:
// anyone can send one without a cookie (mac2), and if those paid the
// bucket of proven initiations, a flood of them would refuse the victim's
// real handshakes for as long as it lasted.
func TestForgedUnprovenFloodDoesNotRefuseProvenSource(t *testing.T) {
	r := newBucketRig(t)
	forger := handshake.NewCookieGenerator(r.d.host.PublicKey(), r.clock.Now) // our public key, no cookie
	r.prove(t)
	const proven = 5
	forged := 0
	for i := range proven {
		for range 4 * handshake.RateLimitBurst {
			msg := make([]byte, handshake.InitiationSize)
			msg[0], msg[1] = handshake.MessageTypeInitiation, handshake.ProtocolVersion
			forger.AddMACs(msg)
			r.d.queueHandshake(msg, r.ep)
			forged++
		}
		if i > 0 {
			r.clock.Advance(interval)
		}
		r.send()
	}
	waitFor(t, 5*time.Second, "the victim's initiations to reach the public-key work", func() bool {
		return r.d.drops[dropHandshakeFailed].Load() >= proven
	})
	if got := r.d.drops[dropHandshakeFailed].Load(); got != proven {
		t.Fatalf("%d initiations reached the public-key work, want the victim's %d (none of the %d forged)", got, proven, forged)
	}
	if c := r.cookies.Load(); c == 0 || c > int64(handshake.RateLimitBurst+proven) {
		t.Fatalf("%d cookie replies to %d forged initiations, want some, within the cookie bucket", c, forged)
	}
}
