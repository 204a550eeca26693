// Package securesession is the stunnel protocol as a library: an
// authenticated, forward-secret, replay-protected channel between two peers
// over any transport the caller has (UDP, TCP, a message queue, a serial
// link). It does no networking itself, in the manner of Themis Secure
// Session: the caller moves the bytes.
//
// Two ways to use it:
//
//   - The buffer API: Session. Connect returns the first message to send;
//     Unwrap takes every message that arrives and returns the application
//     data in it, or the messages to send back; Wrap seals application data;
//     Tick hands back what is due because of time (handshake retries,
//     rekeys, keepalives). Nothing runs in the background.
//   - The callback API: Conn (Dial, Accept). Given functions that send and
//     receive one message, it handshakes, rekeys and retries by itself and
//     offers blocking Send and Receive. Like a UDP socket it holds a
//     bounded queue of received messages (ReceiveQueueLen): what arrives
//     while the application leaves it full is dropped and counted
//     (Conn.DroppedQueueFull), and handshakes never wait behind it.
//
// For stream transports (TCP, a pipe), WriteFrame and ReadFrame put each
// message behind a length prefix; StreamTransport wraps a net.Conn.
//
// A program using this package is an interoperable stunnel peer: the
// session logic is stunnel's own session core (package session), the same
// code the daemon runs, and the messages are those of docs/PROTOCOL.md. In
// PayloadIP mode the application data are IP packets, exactly what a
// `stunnel up` daemon carries; in the default PayloadMessages mode each
// message is an opaque byte string (see Config.Payload).
package securesession

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/session"
)

// Payload says what the application messages are.
type Payload uint8

const (
	// PayloadMessages: opaque messages. Each travels as 0x02 followed by
	// its bytes, so an empty message is not mistaken for a keepalive and no
	// message is mistaken for a session control message.
	PayloadMessages Payload = iota
	// PayloadIP: IP packets, carried as they are (what the daemon speaks).
	// Wrap refuses anything that is not an IPv4 or IPv6 packet.
	PayloadIP
)

const (
	payloadTagMessage = 0x02
	// MaxMessage bounds one application message, so a data message fits a
	// UDP datagram.
	MaxMessage = 65535 - 28 - handshake.MinDataSize - 1
)

// Errors. Unwrap's errors wrap one of these or one of package handshake's
// sentinels (handshake.ErrUnknownPeer, handshake.ErrKeyMismatch, ...).
var (
	ErrNotEstablished = errors.New("securesession: no session established yet")
	ErrUnknownIndex   = errors.New("securesession: message for a session we do not have")
	ErrAuth           = errors.New("securesession: message does not authenticate")
	ErrReplay         = errors.New("securesession: replayed or too old message")
	ErrMalformed      = errors.New("securesession: malformed message")
	ErrOtherPeer      = errors.New("securesession: another peer than this session's")
	ErrTooLarge       = errors.New("securesession: message too large")
	ErrNotIP          = errors.New("securesession: PayloadIP session given something that is not an IP packet")
	// ErrKeyExpired: the message authenticated under a key past
	// reject_after or already retired. Not ErrReplay: a replay suggests an
	// attack, this only a late message or a peer that did not rekey.
	ErrKeyExpired = errors.New("securesession: message under an expired key")
)

// Config configures one side of a session.
type Config struct {
	PeerID     string               // this side's ID, as the peer knows it
	PrivateKey handshake.PrivateKey // this side's static X25519 key
	// Peers finds a peer's public key (and optional pre-shared key) by its
	// ID: the same lookup the daemon uses. LookupFunc adapts a function.
	// The Session's peer, its keys included, is fixed by the lookup that
	// made it (Connect, or the first initiation answered). If Peers later
	// names another key for that ID, a handshake under the new key is
	// refused with session.ErrPeerKeyChanged (which wraps
	// handshake.ErrKeyMismatch, as a handshake under the old key now is
	// refused by the lookup); another pre-shared key, with
	// session.ErrPeerPSKChanged (which wraps ErrPeerKeyChanged). The
	// sessions already made keep working until they expire. To move a
	// peer to new keys, Close the Session and make a new one, as the
	// daemon restarts a peer's session when a reload changes its keys.
	Peers   handshake.PeerLookup
	Cipher  handshake.CipherPreference // zero: auto
	Payload Payload
	// Policy sets key lifetimes and timers (zero: rekey.DefaultPolicy()).
	Policy rekey.Policy
	// Tickets, when set, lets this side issue session tickets to peers that
	// initiate to it and resume their sessions (a *tickets.Ring; share one
	// ring between the sessions of a server). A side that initiates always
	// uses the tickets it is given.
	Tickets session.TicketIssuer
	// ReauthAfter forces a full handshake when the last one is this old
	// (zero: 24h, as the daemon).
	ReauthAfter time.Duration
	Now         func() time.Time // nil: time.Now
	Rand        io.Reader        // nil: crypto/rand
}

// LookupFunc adapts a function to handshake.PeerLookup.
type LookupFunc func(peerID string) (handshake.PeerInfo, error)

// LookupPeer implements handshake.PeerLookup.
func (f LookupFunc) LookupPeer(id []byte) (handshake.PeerInfo, error) { return f(string(id)) }

// Session is one side of a session with one peer: the buffer API. Safe for
// concurrent use.
type Session struct {
	cfg     Config
	now     func() time.Time
	host    *session.Host
	cookies *handshake.CookieChecker // mac1 of messages addressed to us
	reg     *session.MapRegistry

	mu     sync.Mutex    // guards peer and outbox
	peer   *session.Peer // nil until Connect, or until an initiation arrives
	outbox [][]byte      // handshake messages due, handed out by Tick

	sealMu    sync.Mutex // guards sealNonce
	sealNonce [12]byte
	openMu    sync.Mutex // guards openNonce
	openNonce [12]byte

	// life lets Close zero the keys while other goroutines may be in
	// Connect, WrapTo, UnwrapTo or Tick: they hold it shared, Close holds
	// it exclusively (so it waits for them), and once closed they refuse.
	life   sync.RWMutex
	closed bool // guarded by life
}

// Format prints a placeholder, never the keys: fmt would print the
// unexported Config's private key byte by byte.
func (s *Session) Format(f fmt.State, _ rune) { io.WriteString(f, "(securesession.Session)") }

// ErrSessionClosed is returned by a Session after Close.
var ErrSessionClosed = errors.New("securesession: session closed")

// enter is the shared hold of s.life for one call; false once closed.
func (s *Session) enter() bool {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return false
	}
	return true
}

func (s *Session) leave() { s.life.RUnlock() }

// New makes a session side. It does nothing on the wire until Connect (the
// initiator) or the first Unwrap of an initiation (the responder).
func New(cfg Config) (*Session, error) {
	if err := handshake.ValidatePeerID([]byte(cfg.PeerID)); err != nil {
		return nil, fmt.Errorf("securesession: our %w", err)
	}
	if cfg.PrivateKey.IsZero() {
		return nil, errors.New("securesession: private key not set")
	}
	if cfg.Peers == nil {
		return nil, errors.New("securesession: no peer lookup (Config.Peers)")
	}
	if cfg.Payload != PayloadMessages && cfg.Payload != PayloadIP {
		return nil, fmt.Errorf("securesession: Config.Payload %d is neither PayloadMessages nor PayloadIP", cfg.Payload)
	}
	if cfg.Policy == (rekey.Policy{}) {
		cfg.Policy = rekey.DefaultPolicy()
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("securesession: policy: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	hs := &handshake.Config{PeerID: []byte(cfg.PeerID), PrivateKey: cfg.PrivateKey, Cipher: cfg.Cipher,
		Peers: cfg.Peers, Now: now, Rand: cfg.Rand}
	s := &Session{cfg: cfg, now: now, host: session.NewHost(hs, cfg.Policy), reg: session.NewMapRegistry()}
	if cfg.ReauthAfter <= 0 {
		cfg.ReauthAfter = 24 * time.Hour
	}
	s.host.SetTickets(cfg.Tickets, true, cfg.ReauthAfter)
	s.cookies = handshake.NewCookieChecker(s.host.PublicKey(), now, cfg.Rand)
	return s, nil
}

// Connect starts a session with peerID and returns the first message to send.
func (s *Session) Connect(peerID string) ([]byte, error) {
	if !s.enter() {
		return nil, ErrSessionClosed
	}
	defer s.leave()
	info, err := s.cfg.Peers.LookupPeer([]byte(peerID))
	if err != nil {
		return nil, fmt.Errorf("securesession: peer %q: %w", peerID, err)
	}
	s.mu.Lock()
	if s.peer != nil && s.peer.ID() != peerID {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: cannot connect to %q, this session is with %q", ErrOtherPeer, peerID, s.peer.ID())
	}
	if s.peer == nil {
		s.peer = s.host.NewPeer(session.PeerConfig{ID: peerID, PublicKey: info.PublicKey, PresharedKey: info.PresharedKey}, s.reg)
	}
	p := s.peer
	s.mu.Unlock()
	now := s.now()
	p.WantHandshake(now)
	msg, _, err := p.Initiate(now, peerID)
	return msg, err
}

func (s *Session) currentPeer() *session.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// Established reports whether application data can be wrapped now.
func (s *Session) Established() bool {
	p := s.currentPeer()
	return p != nil && p.Current(s.now()) != nil
}

// PeerID is the remote peer's ID ("" until known).
func (s *Session) PeerID() string {
	if p := s.currentPeer(); p != nil {
		return p.ID()
	}
	return ""
}

// SessionID is the current session's ID, derived from the handshake
// transcript (zero if none).
func (s *Session) SessionID() [32]byte {
	if p := s.currentPeer(); p != nil {
		if kp := p.Current(s.now()); kp != nil {
			return kp.SessionID
		}
	}
	return [32]byte{}
}

// Problem says why there is no session, for logs ("" when there is one or
// nothing went wrong).
func (s *Session) Problem() string {
	if p := s.currentPeer(); p != nil {
		return p.Status(s.now()).Problem.String()
	}
	return ""
}

// Handshakes counts the completed handshakes, and of those the resumed
// ones (session tickets).
func (s *Session) Handshakes() (total, resumed uint64) {
	if p := s.currentPeer(); p != nil {
		st := p.Status(s.now())
		return st.Handshakes, st.HandshakesResumed
	}
	return 0, 0
}

// Close zeroes every key the Session holds: the session keys, the peer's
// pre-shared key, and the static private key with everything derived from
// it (the handshake responder's copy, its static-static secrets). These are
// the Session's own copies, made at New and when the peer became known:
// Config holds the keys by value, so the caller's Config and what its
// Peers lookup returns are the caller's to zero. The Session must not be
// used afterwards: Close waits for the Connect, Wrap, Unwrap and Tick calls
// in progress, and those calls then fail with ErrSessionClosed (Tick
// returns nothing). Closing twice is harmless.
func (s *Session) Close() {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if p := s.currentPeer(); p != nil {
		p.Clear()
		p.ZeroSecrets()
	}
	s.host.ZeroPrivateKey()
	s.cfg.PrivateKey.Zero()
}
