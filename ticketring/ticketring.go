// Package ticketring keeps a gateway group's ticket-key ring in etcd
// ([tickets] ring = "etcd", docs/GATEWAY-GROUPS.md): every key is a record
// at PREFIX tickets/NAME sealed under the group secret (tickets.SealRecord);
// every gateway follows those records with a watch and puts exactly them in
// its tickets.Ring; one gateway, elected through etcd (concurrency.Election
// on PREFIX tickets-rotator), adds a key when the newest reaches half of its
// encrypt-decrypt life and deletes the records whose life is over, by its
// clock and by the keys added since (scheduleOver: one gateway's clock
// stepped forward must not retire the group's keys). Keys are added at
// half-life, so a rotator that dies leaves a key that still seals for half
// a lifetime while the next one is elected.
package ticketring

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/directory"
	"stunnel/tickets"
)

// The key spaces below the prefix. conf.PrefixKeySpaces names them too,
// so that no fleet's prefix lies inside them (a prefix of
// ".../tickets-rotator/" would put its election keys in line with ours).
const (
	recordsDir  = "tickets/"
	electionDir = "tickets-rotator"
)

// Options configure a Sync.
type Options struct {
	Endpoints []string
	TLS       *tls.Config // nil: plain http (conf allows that on loopback only)
	// Prefix is the [directory] prefix; records live at Prefix+"tickets/".
	Prefix string
	// Secret seals and opens the records. The Sync owns it from Start on
	// and zeroes it at Close.
	Secret *tickets.GroupSecret
	// Ring receives the group's keys (SetExternalKeys) on every change.
	Ring *tickets.Ring
	// Lifetimes of the keys this gateway adds while it is the rotator.
	EncryptDecrypt, DecryptOnly time.Duration
	// SessionTTL is the rotator's etcd lease: a rotator that dies is
	// replaced after at most this long (whole seconds; default 5 s).
	SessionTTL time.Duration
	// Lead is how far in the future a key added while another still seals
	// starts sealing, so every gateway holds it before any seals with it.
	// Default 1 s; at most a quarter of the encrypt-decrypt life.
	Lead time.Duration
	// Check bounds the rotator's sleep between two looks at the ring
	// (default 30 s; it wakes earlier when a key is due).
	Check time.Duration
	// Identity is this gateway's value in the election (logs, status).
	Identity string
	Now      func() time.Time // nil: time.Now
	Rand     io.Reader        // nil: crypto/rand
	Logger   *slog.Logger
	// Backoff bounds the wait between retries while etcd is away.
	MinBackoff, MaxBackoff time.Duration
	// HealthInterval: how often the follower checks that etcd still
	// answers (a watch alone stays silent while the cluster is gone).
	// etcd gone shows in Status as not connected within two of them.
	HealthInterval time.Duration
}

// Status is the ring's part of `stunnel show`.
type Status struct {
	Role         string    `json:"role"`    // "rotator", "follower" or "connecting" (etcd not reached)
	Rotator      string    `json:"rotator"` // the elected rotator's identity, "" if unknown
	State        string    `json:"state"`   // watch: "starting", "connected", "retrying"
	Keys         int       `json:"keys"`    // records that opened, held now
	Refused      int       `json:"refused"` // records that did not open, now
	RefusedTotal uint64    `json:"refused_total"`
	Added        uint64    `json:"added"`   // keys this gateway added as rotator
	Deleted      uint64    `json:"deleted"` // ended records this gateway deleted as rotator
	LastSync     time.Time `json:"last_sync"`
	LastError    string    `json:"last_error"`
}

// Sync follows and, when elected, rotates one group's ring in etcd.
type Sync struct {
	opt    Options
	log    *slog.Logger
	cli    *clientv3.Client
	dir    string // Prefix + "tickets/"
	elect  string // Prefix + "tickets-rotator"
	cancel context.CancelFunc
	wg     sync.WaitGroup
	synced chan struct{} // closed at the first successful list
	once   sync.Once
	kick   chan struct{} // cap 1: the records changed, the rotator looks again

	// mu guards the fields below; held briefly, never across network I/O.
	mu       sync.Mutex
	keys     map[string]*tickets.Key // etcd key -> opened key (secrets: erased when dropped)
	refused  map[string]int64        // etcd key -> mod revision of the record that did not open
	leaders  map[string]leaderEntry  // election key -> value (shownRotator), create revision
	status   Status
	ed, do   time.Duration // lifetimes of keys we add (SetLifetimes on reload)
	awayOnce bool          // the current outage was logged
	looked   time.Time     // clock time of the rotator's last complete look (tests wait on it)
}

type leaderEntry struct {
	value string
	rev   int64
}

// Start connects to etcd and begins following and campaigning in the
// background. It fails only on options that can never work; etcd being
// down is not an error (both loops retry).
func Start(opt Options) (*Sync, error) {
	s, err := newSync(opt)
	if err != nil {
		return nil, err
	}
	s.start()
	return s, nil
}

// newSync checks and completes the options and makes the etcd client;
// nothing runs yet (start). Tests reach the client in between.
func newSync(opt Options) (*Sync, error) {
	if len(opt.Endpoints) == 0 || opt.Prefix == "" || opt.Secret == nil || opt.Ring == nil {
		return nil, errors.New("ticket ring in etcd: needs etcd endpoints, a prefix, a group secret and a ring")
	}
	if opt.EncryptDecrypt <= 0 || opt.DecryptOnly <= 0 {
		return nil, errors.New("ticket ring in etcd: lifetimes must be positive")
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 5 * time.Second
	}
	if opt.Lead <= 0 {
		opt.Lead = time.Second
	}
	if opt.Check <= 0 {
		opt.Check = 30 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 200 * time.Millisecond
	}
	if opt.MaxBackoff < opt.MinBackoff {
		opt.MaxBackoff = max(opt.MinBackoff, 5*time.Second)
	}
	if opt.HealthInterval <= 0 {
		opt.HealthInterval = 2 * time.Second
	}
	cli, err := directory.DialWatcher(opt.Endpoints, opt.TLS)
	if err != nil {
		return nil, fmt.Errorf("ticket ring: etcd client for %v: %w", opt.Endpoints, err)
	}
	return &Sync{
		opt: opt, log: opt.Logger.With("ticket_ring", opt.Prefix+"tickets/"), cli: cli,
		dir: opt.Prefix + recordsDir, elect: opt.Prefix + electionDir,
		synced: make(chan struct{}), kick: make(chan struct{}, 1),
		keys: map[string]*tickets.Key{}, refused: map[string]int64{}, leaders: map[string]leaderEntry{},
		status: Status{Role: "connecting", State: "starting"},
		ed:     opt.EncryptDecrypt, do: opt.DecryptOnly,
	}, nil
}

// start begins following and campaigning in the background.
func (s *Sync) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// Nothing seals until the group's keys arrive: in-memory keys would
	// issue tickets no other gateway opens.
	s.opt.Ring.SetExternalKeys(nil)
	s.opt.Ring.SetNoKeyHint("the ring is in etcd: check that etcd answers and that a rotator is elected (stunnel show: ticket ring)")
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.follow(ctx) }()
	go func() { defer s.wg.Done(); s.campaign(ctx) }()
}

// WaitSynced waits up to timeout for the first list of the records and
// says whether it came.
func (s *Sync) WaitSynced(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.synced:
		return true
	case <-t.C:
		return false
	}
}

// SetLifetimes changes the lifetimes of keys added from now on (reload).
func (s *Sync) SetLifetimes(encryptDecrypt, decryptOnly time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if encryptDecrypt > 0 {
		s.ed = encryptDecrypt
	}
	if decryptOnly > 0 {
		s.do = decryptOnly
	}
}

// Close resigns (a rotator revokes its lease, so another takes over at
// once), stops both loops and closes the client. The ring keeps its keys.
func (s *Sync) Close() error {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		// A call blocked on an unreachable etcd (the election's own
		// resign uses the client's context): closing the client ends it.
	}
	err := s.cli.Close()
	<-done
	s.mu.Lock()
	for k, key := range s.keys {
		key.Erase()
		delete(s.keys, k)
	}
	s.mu.Unlock()
	s.opt.Secret.Zero()
	return err
}

// Status reports the role, the watch state and the counts.
func (s *Sync) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Keys = len(s.keys)
	st.Refused = len(s.refused)
	if st.Role != "rotator" {
		st.Role = "connecting"
		if st.State == "connected" {
			st.Role = "follower"
		}
	}
	var best leaderEntry
	for _, e := range s.leaders {
		if best.rev == 0 || e.rev < best.rev {
			best = e
		}
	}
	st.Rotator = best.value
	if st.Role == "rotator" {
		st.Rotator = shownRotator(s.opt.Identity) // known here before the watch brings our election key
	}
	return st
}

func (s *Sync) setRole(role string) {
	s.mu.Lock()
	s.status.Role = role
	s.mu.Unlock()
}

func (s *Sync) wakeRotator() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
