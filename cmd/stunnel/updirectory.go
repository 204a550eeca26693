package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"stunnel/conf"
	"stunnel/directory"
	"stunnel/handshake"
	"stunnel/ticketring"
	"stunnel/tunnel"
	"stunnel/tunnel/netcfg"
)

// directoryWait bounds how long `up` waits for etcd's first answer before
// starting with what it has (the disk cache, or the file's peers alone).
const directoryWait = 3 * time.Second

// dirSync joins the etcd directory to a running device: each change in the
// directory becomes a reload of the file's peers plus the directory's,
// through the same Device.Reload and route update as SIGHUP, so unchanged
// peers keep their sessions and a changed key makes a new peer.
type dirSync struct {
	dir dirSource
	log *slog.Logger

	// mu serializes applies (directory changes, attach and SIGHUP reloads),
	// so the device and the routes always reflect one (file, directory)
	// pair, and an older directory list is never applied over a newer one.
	mu   sync.Mutex
	file *conf.Config // the file's config last applied (or about to be, at start)
	// watching is the [directory] the watcher started with (set by
	// initial): until a restart it is the etcd the daemon reads, whatever
	// a reload's file says (recordRulesLocked).
	watching *conf.Directory
	// peers is the directory's newest valid records that reached this
	// (through initial, then OnChange); running is the directory's records
	// the device was built with or last reloaded with. They differ while a
	// change waits for the device (during start-up) or after a failed apply.
	peers    []conf.Peer
	running  []conf.Peer
	dev      *tunnel.Device  // nil until attached, and again after detach
	link     *netcfg.Link    //
	reported map[string]bool // skipped-record and override messages already logged
	defaults map[string]bool // directory peers' /0s logged as no default route: "ID PREFIXES"
	applied  int             // directory records in use: peers in the running set, and records a same-key [[peer]] stands in for

	priv      handshake.PrivateKey // seals the disk cache; zeroed at Close
	closeOnce sync.Once

	// ring is the etcd ticket ring ([tickets] ring = "etcd"), nil without
	// it, and ringCfg the [tickets] it started with; both set once at start
	// (attachRing) before the control socket serves; ring closed by up.
	ring    *ticketring.Sync
	ringCfg conf.Tickets
}

// dirSource is what a dirSync uses of *directory.Directory; tests stand
// in for it to force an order of events.
type dirSource interface {
	Peers() []conf.Peer
	State() directory.State
	Close() error
}

// startDirectory starts the directory of cfg's [directory] (nil, nil when
// there is none) and waits up to directoryWait for etcd's first answer.
func startDirectory(cfg *conf.Config, token handshake.StaticKey, log *slog.Logger) (*dirSync, error) {
	dc := cfg.Directory
	if dc == nil {
		return nil, nil
	}
	tlsCfg, err := directory.TLSConfig(dc)
	if err != nil {
		return nil, err
	}
	s := &dirSync{log: log, file: cfg, reported: map[string]bool{}}
	var key directory.StaticKey = token // a token key seals the cache through the token
	if token == nil {
		s.priv = cfg.Interface.PrivateKey // a copy this owns and zeroes
		key = directory.MemoryKey(&s.priv)
	}
	dir, err := directory.Start(directory.Options{
		Endpoints: dc.Endpoints, Prefix: dc.Prefix, TLS: tlsCfg,
		CacheFile: dc.CacheFile, Key: key,
		Logger: log, OnChange: s.onChange,
		AdvertiseID: cfg.Interface.PeerID, AdvertiseEndpoint: dc.AdvertiseEndpoint,
	})
	if err != nil {
		clear(s.priv[:])
		return nil, err
	}
	s.dir = dir
	if !dir.WaitSynced(directoryWait) {
		st := dir.State()
		log.Warn("directory: etcd did not answer at start; starting with the disk cache and the file's peers",
			"source", st.Source, "directory_peers", st.Peers, "err", st.LastError)
	}
	return s, nil
}

// initial is the merged config to start the device with.
func (s *dirSync) initial() *conf.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watching = s.file.Directory
	s.peers = s.dir.Peers()
	s.running = s.peers
	return s.mergeLocked(s.file)
}

// attach starts applying directory changes to dev and link, first
// catching up on the changes that came while the device was built: those
// only updated s.peers, as there was no device to apply them to (a record
// deleted while the host was down, say, is still in the device's disk-cache
// list). The compare and the apply hold mu, like onChange, so the two
// cannot interleave. attach does not read the directory itself: the
// notifier may be waiting on mu with a list older than one read here and
// would apply it next; every change reaches onChange after it is made, so
// the newest list is applied there once dev is set.
func (s *dirSync) attach(dev *tunnel.Device, link *netcfg.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dev, s.link = dev, link
	if !samePeers(s.peers, s.running) {
		s.applyLocked()
	}
}

// samePeers reports whether two directory lists are equal, a nil list
// equal to an empty one.
func samePeers(a, b []conf.Peer) bool {
	return slices.EqualFunc(a, b, conf.Peer.Equal)
}

// Close stops the directory; no apply runs after it returns. Safe to call
// more than once.
func (s *dirSync) Close() {
	s.closeOnce.Do(func() {
		s.dir.Close()
		s.mu.Lock()
		s.dev, s.link = nil, nil
		s.mu.Unlock()
		s.priv.Zero()
	})
}

// lock is for the SIGHUP reload: hold it across merge, Reload and the route
// update; it returns the unlock.
func (s *dirSync) lock() func() {
	s.mu.Lock()
	return s.mu.Unlock
}

// mergeLocked is file's peers plus the directory's that fit, counted in
// s.applied for show; the rest are logged once each (again only if they go
// away and come back).
func (s *dirSync) mergeLocked(file *conf.Config) *conf.Config {
	merged, problems, overrides := s.mergeExcludingLocked(file, nil)
	s.applied = len(merged.Peers) - len(file.Peers) + len(overrides)
	s.reportLocked(problems, overrides)
	s.noteDefaultsLocked(merged)
	return merged
}

// mergeExcludingLocked is mergeLocked leaving out the directory records
// named in refused (ID: why), and returning what is not used, and the
// records a [[peer]] with their key stands in for (conf.ErrFileOverrides),
// instead of reporting them: applyMergedLocked reports only its last try's.
func (s *dirSync) mergeExcludingLocked(file *conf.Config, refused map[string]string) (merged *conf.Config, problems, overrides []string) {
	peers := s.peers
	if len(refused) > 0 {
		peers = slices.DeleteFunc(slices.Clone(peers), func(p conf.Peer) bool { return refused[p.ID] != "" })
	}
	merged, skipped := conf.MergePeers(s.recordRulesLocked(file), peers)
	merged.Directory = file.Directory
	problems = make([]string, 0, len(skipped)+len(refused))
	for _, err := range skipped {
		// The documented way to an exit through a fleet host (its /0 in
		// a [[peer]], its record kept for the others): no error to fix.
		if errors.Is(err, conf.ErrFileOverrides) {
			overrides = append(overrides, err.Error())
			continue
		}
		problems = append(problems, err.Error())
	}
	for _, why := range refused {
		problems = append(problems, why)
	}
	return merged, problems, overrides
}

// recordRulesLocked is file with the [directory] the merge checks records
// against: the running watcher's, whose etcd endpoints are the ones a
// record must not capture until a restart, with the file's records_within,
// which a reload applies. A file without [directory] keeps the running
// table whole, records_within included: the watcher goes on until a
// restart, and dropping the table must not let etcd route anything here.
func (s *dirSync) recordRulesLocked(file *conf.Config) *conf.Config {
	if s.watching == nil || file.Directory == s.watching {
		return file
	}
	rules := *s.watching
	if file.Directory != nil {
		rules.RecordsWithin = file.Directory.RecordsWithin
	}
	c := *file
	c.Directory = &rules
	return &c
}

// reportLocked logs the records not used, and those a [[peer]] of the file
// stands in for, each once while it stays so.
func (s *dirSync) reportLocked(problems, overrides []string) {
	seen := make(map[string]bool, len(problems)+len(overrides))
	for _, msg := range problems {
		seen[msg] = true
		if !s.reported[msg] {
			s.log.Error("directory: record not used", "problem", msg)
		}
	}
	for _, msg := range overrides {
		seen[msg] = true
		if !s.reported[msg] {
			s.log.Info("directory: record replaced by the config file's [[peer]]", "override", msg)
		}
	}
	s.reported = seen
}

// noteDefaultsLocked logs each directory peer of cfg, the peers now in
// use, that has a /0: once, and again only if its /0s change or it goes
// away and comes back. Whoever published an exit in etcd learns why no
// host's traffic goes there (fullTunnelFamilies).
func (s *dirSync) noteDefaultsLocked(cfg *conf.Config) {
	seen := make(map[string]bool)
	for _, p := range cfg.Peers {
		var zeros []string
		for _, pfx := range p.AllowedIPs {
			if p.FromDirectory && pfx.Bits() == 0 {
				zeros = append(zeros, pfx.String())
			}
		}
		if len(zeros) == 0 {
			continue
		}
		key := p.ID + " " + strings.Join(zeros, ",")
		seen[key] = true
		if !s.defaults[key] {
			s.log.Info("directory: a record's /0 is not made a default route; a full tunnel comes only from a [[peer]] in the config file",
				"peer", p.ID, "allowed_ips", strings.Join(zeros, ","))
		}
	}
	s.defaults = seen
}

// fileApplied records the file's config after a successful SIGHUP reload,
// and zeroes the secrets of the one it replaces.
// A changed [directory] is not applied to the running watcher (etcd
// endpoints, prefix and credentials are fixed at start); say so. Its
// records_within is not the watcher's: the merge reads it from the file
// at every apply, this reload's included.
func (s *dirSync) fileAppliedLocked(file *conf.Config) {
	if file.Directory == nil && s.file.Directory != nil {
		s.log.Warn("reload: [directory] was removed; the directory and its records_within stay in use until the next restart")
	} else if !reflect.DeepEqual(watcherSettings(file.Directory), watcherSettings(s.file.Directory)) {
		s.log.Warn("reload: [directory] changes take effect at the next restart (records_within aside: it applies now)")
	}
	if s.file != file {
		// The one copy of the file's keys this keeps is the newest
		// file's: the one it replaces is no one's any more.
		zeroConfigSecrets(s.file)
	}
	s.file = file
	s.running = s.peers // the reload merged them
}

// watcherSettings is d without what a reload applies (records_within) and
// without its line, which an edit above it moves.
func watcherSettings(d *conf.Directory) *conf.Directory {
	if d == nil {
		return nil
	}
	c := *d
	c.RecordsWithin, c.Line = nil, 0
	return &c
}

// onChange is the directory's OnChange: it stores the newest list and,
// once a device is attached, applies it unless the device runs that list
// already (a burst that came back to where it started, say): a reload
// with nothing to change would still log and rebuild the peer set. A list
// whose apply failed is not running, so the next call tries it again; the
// directory calls only when its records change (a relist that finds the
// same records does not), so a failed apply, or a record left out because
// the kernel refused its route, is retried at the next change or reload
// (SIGHUP), not at a relist.
func (s *dirSync) onChange(peers []conf.Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers = slices.Clone(peers) // OnChange must not keep the caller's slice
	if s.dev == nil || samePeers(s.peers, s.running) {
		return // attach applies it, or nothing to apply
	}
	s.applyLocked()
}

// applyLocked reloads the device with the file's peers plus s.peers (mu
// held, dev set).
func (s *dirSync) applyLocked() {
	start := time.Now()
	// Peers and routes together, or neither (reloadroutes.go); a nil link
	// (in-process tests) changes the device only.
	cfg, err := s.applyMergedLocked(s.file, func(cfg *conf.Config) error { return applyPeers(s.dev, s.link, cfg, s.log) })
	zeroConfigSecrets(cfg) // MergePeers' copy of the file's keys; the device has its own
	if err != nil {
		s.log.Error("directory: applying the change failed; keeping the running peers and routes", "err", err.Error())
		return
	}
	s.running = s.peers
	s.log.Debug("directory: change applied", "peers", len(cfg.Peers), "took", time.Since(start).String())
}

// status is the directory's part of `show`.
func (s *dirSync) status() *tunnel.DirectoryStatus {
	st := s.dir.State()
	s.mu.Lock()
	applied := s.applied
	s.mu.Unlock()
	return &tunnel.DirectoryStatus{
		State: st.State, Source: st.Source, Revision: st.Revision, LastSync: st.LastSync,
		Peers: st.Peers, Applied: applied, Malformed: st.Malformed, MalformedTotal: st.MalformedTotal,
		LastError: st.LastError,
	}
}

func writeDirectory(w io.Writer, d *tunnel.DirectoryStatus, now time.Time) {
	sync := "never"
	if !d.LastSync.IsZero() {
		sync = ago(now.Sub(d.LastSync))
	}
	fmt.Fprintf(w, "  directory: %s (from %s), revision %d, last sync %s, %d records, %d in use, %d malformed\n",
		d.State, orNone(d.Source), d.Revision, sync, d.Peers, d.Applied, d.Malformed)
	if d.LastError != "" && d.State != "connected" {
		fmt.Fprintf(w, "  directory error: %s\n", d.LastError)
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing yet"
	}
	return s
}

// statusJSON is the control socket's status reply: the device's, plus the
// directory's state when there is one.
func statusJSON(d *tunnel.Device, ds *dirSync) ([]byte, error) {
	st := d.Status()
	if ds != nil {
		st.Directory = ds.status()
		if ds.ring != nil {
			st.TicketRing = ticketRingStatus(ds.ring)
		}
	}
	return json.Marshal(st)
}

// applyMergedLocked merges file with the directory and applies the result
// through apply (mu held). A directory record whose route the kernel
// refuses (another interface routes its prefix) is left out and reported
// like a record the merge skips, and the rest is applied again: all or
// nothing would let one such record hold back every later change,
// revocations and SIGHUP reloads included. A file peer's refused route
// fails the apply; the caller keeps the running configuration. apply must
// leave everything as it was when it fails (applyPeers, applyReload do),
// and each round leaves out one more record, so the loop ends. s.applied,
// show's "in use", counts the directory peers of the round that applied,
// whose /0s are logged then (noteDefaultsLocked), and the records a
// same-key [[peer]] stands in for; a failed apply leaves both, as it
// leaves the running peers.
func (s *dirSync) applyMergedLocked(file *conf.Config, apply func(*conf.Config) error) (*conf.Config, error) {
	var refused map[string]string
	for {
		cfg, problems, overrides := s.mergeExcludingLocked(file, refused)
		err := apply(cfg)
		if err == nil {
			s.applied = len(cfg.Peers) - len(file.Peers) + len(overrides)
			s.noteDefaultsLocked(cfg)
		}
		var re *netcfg.RouteError
		if err == nil || !errors.As(err, &re) {
			s.reportLocked(problems, overrides)
			return cfg, err
		}
		id, ok := directoryPeerRouting(cfg, file, re.Prefix)
		if !ok || refused[id] != "" {
			s.reportLocked(problems, overrides)
			return cfg, err
		}
		zeroConfigSecrets(cfg) // this try's own copies (MergePeers copies)
		if refused == nil {
			refused = make(map[string]string)
		}
		refused[id] = fmt.Sprintf("directory peer %q: %v; skipped", id, re)
	}
}

// directoryPeerRouting returns the ID of the directory peer of cfg (one not
// in file) whose allowed_ips hold route p.
func directoryPeerRouting(cfg, file *conf.Config, p netip.Prefix) (string, bool) {
	for _, peer := range cfg.Peers {
		if slices.ContainsFunc(file.Peers, func(f conf.Peer) bool { return f.ID == peer.ID }) {
			continue
		}
		for _, ip := range peer.AllowedIPs {
			if ip.Masked() == p.Masked() {
				return peer.ID, true
			}
		}
	}
	return "", false
}
