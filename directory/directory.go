package directory

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/conf"
	"stunnel/internal/etcdwatch"
)

// Options configure a Directory.
type Options struct {
	Endpoints []string
	Prefix    string
	TLS       *tls.Config // nil: plain http (conf allows that on loopback only)
	// CacheFile, when set with Key, is where the last good directory is
	// sealed after each sync and read at start if etcd cannot be reached.
	CacheFile string
	Key       StaticKey
	Logger    *slog.Logger
	// OnChange receives the whole directory, sorted by ID, after each
	// change (a relist that finds nothing new is none); calls never
	// overlap, and a burst of changes is coalesced into one call with the
	// newest list. It must not keep the slice's backing
	// array past the call's return.
	OnChange func(peers []conf.Peer)
	// Backoff bounds the wait between retries while etcd is away.
	MinBackoff, MaxBackoff time.Duration
	// AdvertiseID and AdvertiseEndpoint, when both set, publish this
	// host's endpoint at PREFIX endpoints/ID under a lease of LeaseTTL
	// (default 10 s), kept alive while the Directory runs and revoked at
	// Close; etcd drops it by itself when the host dies.
	AdvertiseID, AdvertiseEndpoint string
	LeaseTTL                       time.Duration
	// HealthInterval is how often a watching client checks that etcd still
	// answers: a watch alone stays silent while the cluster is gone.
	HealthInterval time.Duration
}

// State is what `stunnel show` prints about the directory.
type State struct {
	State          string    `json:"state"`    // "starting", "connected", "retrying"
	Source         string    `json:"source"`   // "etcd", "cache" (disk, from an earlier run) or "" (nothing yet)
	Revision       int64     `json:"revision"` // etcd revision the local copy reflects
	LastSync       time.Time `json:"last_sync"`
	Peers          int       `json:"peers"`           // valid records held
	Malformed      int       `json:"malformed"`       // records skipped now
	MalformedTotal uint64    `json:"malformed_total"` // records skipped since start, counted once per version of a key
	LastError      string    `json:"last_error"`
}

// Directory is a local copy of one etcd prefix's peer records.
type Directory struct {
	opt    Options
	log    *slog.Logger
	cli    *clientv3.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // cap 1: the copy changed, OnChange is due
	save   chan struct{} // cap 1: the copy changed, the disk cache is due
	synced chan struct{} // closed at the first successful list
	once   sync.Once

	// mu guards the fields below; held briefly, never across network I/O.
	mu        sync.Mutex
	peers     map[string]conf.Peer // by ID: the valid records
	raw       map[string][]byte    // by ID: every record's bytes, for the disk cache
	malformed map[string]string    // key -> why, for records skipped now
	endpoints map[string]string    // by ID: endpoints hosts published under a lease
	state     State

	malformedTotal atomic.Uint64
	// cacheStale: the last disk cache write failed, so the file may hold
	// an older directory than the copy. Set and cleared by saveDiskCache
	// (the saver goroutine); replace reads it to write again at a relist
	// that finds nothing new.
	cacheStale atomic.Bool
}

// Start loads the disk cache (if any), connects to etcd and begins the
// list-and-watch loop in the background. It fails only on options that can
// never work; etcd being down is not an error (the loop retries).
func Start(opt Options) (*Directory, error) {
	if len(opt.Endpoints) == 0 || opt.Prefix == "" {
		return nil, errors.New("directory: needs etcd endpoints and a prefix")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 200 * time.Millisecond
	}
	if opt.MaxBackoff < opt.MinBackoff {
		opt.MaxBackoff = max(opt.MinBackoff, 10*time.Second)
	}
	if opt.HealthInterval <= 0 {
		opt.HealthInterval = 2 * time.Second
	}
	cli, err := DialWatcher(opt.Endpoints, opt.TLS)
	if err != nil {
		return nil, fmt.Errorf("directory: etcd client for %v: %w", opt.Endpoints, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := newDirectory(opt)
	d.cli, d.cancel = cli, cancel
	d.loadDiskCache()
	if opt.AdvertiseID != "" && opt.AdvertiseEndpoint != "" {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.publish(ctx) }()
	}
	d.wg.Add(3)
	go func() { defer d.wg.Done(); d.notifier(ctx) }()
	go func() { defer d.wg.Done(); d.saver(ctx) }()
	go func() { defer d.wg.Done(); d.run(ctx) }()
	return d, nil
}

// newDirectory is a Directory with no etcd client and nothing running:
// Start's, and the tests' for what needs no etcd.
func newDirectory(opt Options) *Directory {
	return &Directory{
		opt: opt, log: opt.Logger.With("directory", opt.Prefix),
		kick:      make(chan struct{}, 1),
		save:      make(chan struct{}, 1),
		synced:    make(chan struct{}),
		peers:     map[string]conf.Peer{},
		raw:       map[string][]byte{},
		malformed: map[string]string{},
		endpoints: map[string]string{},
		state:     State{State: "starting"},
	}
}

// WaitSynced waits up to timeout for the first successful list from etcd
// and says whether it came.
func (d *Directory) WaitSynced(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.synced:
		return true
	case <-t.C:
		return false
	}
}

// Close stops the watcher and the notifier and closes the etcd client. No
// OnChange call runs after it returns.
func (d *Directory) Close() error {
	d.cancel()
	d.wg.Wait()
	return d.cli.Close()
}

// Peers is the current valid directory, sorted by ID. Local only: it never
// waits for etcd.
func (d *Directory) Peers() []conf.Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]conf.Peer, 0, len(d.peers))
	for id, p := range d.peers {
		if p.Endpoint == "" {
			p.Endpoint = d.endpoints[id] // published by the host itself, if at all
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b conf.Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// State reports the connection state, revision and counts.
func (d *Directory) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.state
	s.Peers = len(d.peers)
	s.Malformed = len(d.malformed)
	s.MalformedTotal = d.malformedTotal.Load()
	return s
}

// setLocked stores one record (d.mu held): valid ones join peers, others
// are skipped, counted and logged with their key once per version.
func (d *Directory) setLocked(key, id string, value []byte, modRev int64) {
	if len(value) > MaxRecordSize || len(id) > conf.MaxPeerIDLen {
		// Malformed by its length alone: not kept for the disk cache,
		// which every change rewrites and which a few of etcd's largest
		// keys or values would make too large to load (cacheLimit).
		delete(d.raw, id)
	} else {
		d.raw[id] = value
	}
	p, err := ParseRecord(id, value)
	if err != nil {
		delete(d.peers, id)
		d.skipLocked(key, "record", modRev, err)
		return
	}
	delete(d.malformed, key)
	d.peers[id] = p
}

// skipLocked counts and logs a key not used, once per reason. The key is
// logged bounded, as its error names the ID (conf.QuoteID): whoever writes
// to etcd chooses both, and a megabyte key would be a megabyte line on
// every host.
func (d *Directory) skipLocked(key, what string, modRev int64, err error) {
	msg := err.Error()
	if d.malformed[key] != msg {
		d.malformedTotal.Add(1)
		shown := conf.EscapeBounded(key, len(d.opt.Prefix)+len(EndpointsDir)+conf.MaxPeerIDLen)
		d.log.Warn("directory: skipping malformed "+what, "key", shown, "mod_revision", modRev, "err", msg)
	}
	d.malformed[key] = msg
}

// putLocked dispatches one key of the prefix: a record, a published
// endpoint, a key deeper than those (skipped as malformed), or something
// else (ignored: the ticket ring's keys, say).
func (d *Directory) putLocked(key string, value []byte, modRev int64) {
	if id, ok := PeerIDFromKey(d.opt.Prefix, key); ok {
		d.setLocked(key, id, value, modRev)
		return
	}
	if deeperKey(d.opt.Prefix, key) {
		d.skipLocked(key, "record", modRev, errDeeperKey)
		return
	}
	id, ok := EndpointIDFromKey(d.opt.Prefix, key)
	if !ok {
		return
	}
	ep, err := ParseEndpointRecord(value)
	if err != nil {
		delete(d.endpoints, id)
		d.skipLocked(key, "published endpoint", modRev, err)
		return
	}
	delete(d.malformed, key)
	d.endpoints[id] = ep
}

func (d *Directory) deleteLocked(key, id string) {
	delete(d.raw, id)
	delete(d.peers, id)
	delete(d.malformed, key)
}

// changed asks the notifier for an OnChange call and the saver for a
// write of the disk cache; a pending one absorbs it.
func (d *Directory) changed() {
	signal(d.kick)
	signal(d.save)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (d *Directory) notifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			if d.opt.OnChange != nil {
				d.opt.OnChange(d.Peers())
			}
		}
	}
}

func (d *Directory) setState(state, lastErr string) {
	d.mu.Lock()
	d.state.State, d.state.LastError = state, lastErr
	d.mu.Unlock()
}

// run lists and watches until ctx ends, retrying with capped exponential
// backoff while etcd is away or the watch breaks.
func (d *Directory) run(ctx context.Context) {
	backoff := d.opt.MinBackoff
	for ctx.Err() == nil {
		synced, err := d.listAndWatch(ctx)
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = d.opt.MinBackoff
		}
		if errors.Is(err, errCompacted) {
			// Routine (etcd compacts on a schedule): the list that follows
			// logs at info level only what it changes.
			d.log.Debug("directory: watch revision compacted; listing again")
			continue
		}
		d.setState("retrying", err.Error())
		d.log.Warn("directory: etcd unreachable or watch broken; keeping the local copy and retrying",
			"endpoints", d.opt.Endpoints, "retry_in", backoff.String(), "err", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, d.opt.MaxBackoff)
	}
}

var errCompacted = etcdwatch.ErrCompacted

// listAndWatch reads the prefix at one revision, replaces the local copy
// with it, then applies watch events from the next revision on. It returns
// when the watch breaks (compaction, cancellation, lost leader) or the
// health check fails; synced says whether the list succeeded.
func (d *Directory) listAndWatch(ctx context.Context) (synced bool, err error) {
	prefix := d.opt.Prefix
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := d.cli.Get(gctx, prefix, clientv3.WithPrefix())
	gcancel()
	if err != nil {
		return false, fmt.Errorf("listing %s: %w", prefix, err)
	}
	rev := resp.Header.Revision
	kvs := make([]keyValue, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		kvs[i] = keyValue{key: string(kv.Key), value: kv.Value, modRev: kv.ModRevision}
	}
	d.replace(rev, kvs)
	d.once.Do(func() { close(d.synced) })

	return true, d.watch(ctx, rev+1)
}

// keyValue is one key of a list, as replace reads it.
type keyValue struct {
	key    string
	value  []byte
	modRev int64
}

// replace makes the local copy the list kvs, read at revision rev, and
// passes on only what differs from the copy it replaces. A relist (after
// etcd was away, or after a compaction) mostly finds what the copy holds
// already: then no OnChange is due, so the daemon neither reloads the
// device nor logs, and the disk cache is rewritten only when a record
// changed, this is the first list from etcd (Source was "cache" or
// nothing), or the last write of it failed.
func (d *Directory) replace(rev int64, kvs []keyValue) {
	d.mu.Lock()
	oldPeers, oldRaw, oldEndpoints, prev := d.peers, d.raw, d.endpoints, d.state
	d.peers, d.raw = map[string]conf.Peer{}, map[string][]byte{}
	d.endpoints = map[string]string{}
	// malformed is kept through the list, so a record skipped before (in
	// the disk cache, or before etcd was away) is not logged and counted
	// again; only the keys etcd no longer has are dropped.
	listed := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		listed[kv.key] = true
		d.putLocked(kv.key, kv.value, kv.modRev)
	}
	for key := range d.malformed {
		if !listed[key] {
			delete(d.malformed, key)
		}
	}
	notify := !maps.EqualFunc(oldPeers, d.peers, conf.Peer.Equal) ||
		!maps.Equal(oldEndpoints, d.endpoints)
	// A write that failed is made again: nothing else would retry it until
	// a record changed, and the file would keep what it had before (a
	// revoked record, say) for a start without etcd to use.
	save := notify || prev.Source != "etcd" || d.cacheStale.Load() || !maps.EqualFunc(oldRaw, d.raw, bytes.Equal)
	d.state = State{State: "connected", Source: "etcd", Revision: rev, LastSync: time.Now()}
	n := len(d.peers)
	d.mu.Unlock()
	// The first sync and the end of an outage (logged when it began) are
	// news; a relist that changed nothing is not.
	level := slog.LevelDebug
	if notify || prev.State != "connected" {
		level = slog.LevelInfo
	}
	d.log.Log(context.Background(), level, "directory: synced with etcd", "revision", rev, "peers", n, "changed", notify)
	if notify {
		signal(d.kick)
	}
	if save {
		signal(d.save)
	}
}

// watch applies events from revision from on until the watch breaks or the
// health check fails (etcdwatch.Run). A compacted revision returns
// errCompacted: the caller lists again, which is the only way to learn
// what was compacted away.
func (d *Directory) watch(ctx context.Context, from int64) error {
	return etcdwatch.Run(ctx, d.cli, from, etcdwatch.Options{
		Prefix: d.opt.Prefix, HealthKey: d.opt.Prefix + "health", HealthInterval: d.opt.HealthInterval,
		Apply: d.apply, Healthy: d.healthy,
	})
}

func (d *Directory) apply(wr clientv3.WatchResponse) {
	d.mu.Lock()
	// Only peer records and endpoints (not the ticket ring's keys, nor a
	// nested fleet's) make a reload.
	relevant := false
	for _, ev := range wr.Events {
		key := string(ev.Kv.Key)
		peer, isPeer := PeerIDFromKey(d.opt.Prefix, key)
		ep, isEndpoint := EndpointIDFromKey(d.opt.Prefix, key)
		relevant = relevant || isPeer || isEndpoint
		switch ev.Type {
		case clientv3.EventTypePut:
			d.putLocked(key, ev.Kv.Value, ev.Kv.ModRevision)
		case clientv3.EventTypeDelete:
			delete(d.malformed, key)
			if isPeer {
				d.deleteLocked(key, peer)
			} else if isEndpoint {
				delete(d.endpoints, ep)
			}
		}
	}
	d.state.Revision = wr.Header.Revision
	d.state.LastSync = time.Now()
	d.mu.Unlock()
	if relevant {
		d.changed()
	}
}

// healthy notes a passed health check: etcd answered just now.
func (d *Directory) healthy() {
	d.mu.Lock()
	d.state.LastSync = time.Now()
	d.mu.Unlock()
}
