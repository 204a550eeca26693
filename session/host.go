package session

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/tickets"
)

// Host is this side's identity and the policy its sessions follow, shared by
// all its peers. Safe for concurrent use.
type Host struct {
	cfg         *handshake.Config // read only after NewHost
	responder   *handshake.Responder
	public      handshake.PublicKey
	now         func() time.Time
	jitter      func() float64
	policy      atomic.Pointer[rekey.Policy] // replaced whole by SetPolicy
	tickets     atomic.Pointer[ticketPolicy] // replaced whole by SetTickets
	log         *slog.Logger
	noKeyLogged atomic.Bool // "no ticket key" said once until a ticket is issued again
}

// NewHost makes the session side of an identity. cfg must stay unchanged
// while the Host is in use; policy must have passed Validate.
func NewHost(cfg *handshake.Config, policy rekey.Policy) *Host {
	h := &Host{
		cfg:       cfg,
		responder: handshake.NewResponder(cfg),
		public:    publicOf(cfg),
		now:       cfg.Now,
		jitter:    rand.Float64,
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.policy.Store(&policy)
	h.log = slog.New(slog.DiscardHandler)
	return h
}

// SetLogger gives the Host a logger for what only it knows (ticket issuance).
func (h *Host) SetLogger(l *slog.Logger) {
	if l != nil {
		h.log = l
	}
}

// logIssueError says why no ticket was issued: the lack of a key in its
// encrypt-decrypt life once (until issuance works again), anything else
// every time (rare: a reauth_after reached).
func (h *Host) logIssueError(peerID string, err error) {
	if errors.Is(err, tickets.ErrNoTicketKey) {
		if h.noKeyLogged.CompareAndSwap(false, true) {
			h.log.Warn("no session tickets issued: no ticket key is in its encrypt-decrypt life", "what_to_do", err.Error())
		}
		return
	}
	h.log.Info("no session ticket issued", "peer", peerID, "reason", err)
}

// publicOf is the static public key of a handshake configuration: the
// token key's, or the one the in-memory private key implies.
func publicOf(cfg *handshake.Config) handshake.PublicKey {
	if cfg.Static != nil {
		return cfg.Static.Public()
	}
	return cfg.PrivateKey.PublicKey()
}

// Config is the handshake configuration the Host was made with (read only).
func (h *Host) Config() *handshake.Config { return h.cfg }

// PublicKey is this side's static public key.
func (h *Host) PublicKey() handshake.PublicKey { return h.public }

// Policy is the policy new sessions and timers follow.
func (h *Host) Policy() rekey.Policy { return *h.policy.Load() }

// SetPolicy replaces the policy (a reload). Sessions keep the lifetimes they
// were made with; the peers' timers take the new durations when the holder
// calls Peer.SetPolicy.
func (h *Host) SetPolicy(p rekey.Policy) { h.policy.Store(&p) }

// ZeroPrivateKey overwrites every in-memory copy of the static private key
// the Host holds: its configuration's, the responder's own copy, and the
// static-static secrets the responder derived from it. Call it once nothing
// uses them any more (the tunnel closed): afterwards the Host answers no
// handshake. A Config.Static key (a token, or the caller's MemoryKey) is
// the caller's and is left alone.
func (h *Host) ZeroPrivateKey() {
	h.cfg.PrivateKey.Zero()
	h.responder.Zero()
}

// SetJitter replaces the source of retry jitter in [0, 1) (tests).
func (h *Host) SetJitter(f func() float64) { h.jitter = f }

// ConsumeInitiation authenticates a handshake initiation addressed to this
// host and answers it (see handshake.Responder.ConsumeInitiation): the
// caller has already run its DoS gates (mac1, cookies, rate limits). On
// success the caller finds the Peer named by sess.PeerID and hands it the
// session with Peer.Accept.
func (h *Host) ConsumeInitiation(msg []byte, localIndex uint32) ([]byte, *handshake.Session, error) {
	return h.responder.ConsumeInitiation(msg, localIndex)
}

// Forget drops what the responder remembers of a peer (its newest
// initiation timestamp), when the peer is removed.
func (h *Host) Forget(peerID string) { h.responder.Forget(peerID) }
