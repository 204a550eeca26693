package ticketring

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stunnel/conf"
	"stunnel/internal/etcdwatch"
	"stunnel/tickets"
)

// follow lists and watches PREFIX tickets (the records and the election
// keys) until ctx ends. While etcd is away the ring keeps the keys it has:
// each expires by its own lifetimes. One log line per outage.
func (s *Sync) follow(ctx context.Context) {
	backoff := s.opt.MinBackoff
	for ctx.Err() == nil {
		synced, err := s.listAndWatch(ctx)
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = s.opt.MinBackoff
		}
		if errors.Is(err, errCompacted) {
			continue // list again: the only way to learn what was compacted away
		}
		s.mu.Lock()
		s.status.State, s.status.LastError = "retrying", err.Error()
		first := !s.awayOnce
		s.awayOnce = true
		n := len(s.keys)
		s.mu.Unlock()
		if first {
			s.log.Warn("ticket ring: etcd unreachable or watch broken; keeping the ticket keys we have (each ends by its own lifetimes) and retrying",
				"keys", n, "endpoints", s.opt.Endpoints, "err", err.Error())
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, s.opt.MaxBackoff)
	}
}

var errCompacted = etcdwatch.ErrCompacted

// listAndWatch reads every record at one revision, replaces the local set
// with it, then applies watch events until the watch breaks or the health
// check fails (etcdwatch.Run: etcd gone, even before the watch's stream is
// up, ends it within two health intervals).
func (s *Sync) listAndWatch(ctx context.Context) (bool, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := s.cli.Get(gctx, s.opt.Prefix+"tickets", clientv3.WithPrefix())
	cancel()
	if err != nil {
		return false, fmt.Errorf("listing %s: %w", s.dir, err)
	}
	s.mu.Lock()
	for k, key := range s.keys {
		key.Erase()
		delete(s.keys, k)
	}
	clear(s.leaders)
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		seen[string(kv.Key)] = true
		s.putLocked(string(kv.Key), kv.Value, kv.ModRevision, kv.CreateRevision)
	}
	for k := range s.refused {
		if !seen[k] {
			delete(s.refused, k)
		}
	}
	wasAway := s.awayOnce
	s.awayOnce = false
	s.status.State, s.status.LastError, s.status.LastSync = "connected", "", time.Now()
	n := len(s.keys)
	s.pushLocked()
	s.mu.Unlock()
	if wasAway {
		s.log.Info("ticket ring: etcd answers again; following the group's keys", "keys", n, "revision", resp.Header.Revision)
	} else {
		s.log.Info("ticket ring: synced with etcd", "keys", n, "revision", resp.Header.Revision)
	}
	s.once.Do(func() { close(s.synced) })
	s.wakeRotator()

	return true, etcdwatch.Run(ctx, s.cli, resp.Header.Revision+1, etcdwatch.Options{
		Prefix: s.opt.Prefix + "tickets", HealthKey: s.opt.Prefix + "health", HealthInterval: s.opt.HealthInterval,
		Apply: s.apply, Healthy: s.healthy,
	})
}

// apply takes one watch response's events.
func (s *Sync) apply(wr clientv3.WatchResponse) {
	s.mu.Lock()
	for _, ev := range wr.Events {
		key := string(ev.Kv.Key)
		if ev.Type == clientv3.EventTypeDelete {
			s.deleteLocked(key)
			continue
		}
		s.putLocked(key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.CreateRevision)
	}
	s.status.LastSync = time.Now()
	s.pushLocked()
	s.mu.Unlock()
	s.wakeRotator()
}

// healthy notes a passed health check: etcd answered just now.
func (s *Sync) healthy() {
	s.mu.Lock()
	s.status.LastSync = time.Now()
	s.mu.Unlock()
}

// recordName is the key name of a record's etcd key, if it is one. Only
// lower-case hex, as NameHex writes it, names a record: hex.Decode takes
// capitals too, and a copy at the capitalised key would hold the key on
// every gateway after the record at its name (the one show prints) was
// deleted to retire it.
func recordName(dir, key string) (name [tickets.NameSize]byte, ok bool) {
	h, found := strings.CutPrefix(key, dir)
	if !found || len(h) != 2*tickets.NameSize || h != strings.ToLower(h) {
		return name, false
	}
	if _, err := hex.Decode(name[:], []byte(h)); err != nil {
		return name, false
	}
	return name, true
}

// putLocked takes one key of PREFIX tickets: a record (opened, or refused
// and logged once per version) or an election key.
func (s *Sync) putLocked(key string, value []byte, modRev, createRev int64) {
	if id, ok := strings.CutPrefix(key, s.elect+"/"); ok && id != "" {
		s.leaders[key] = leaderEntry{value: shownRotator(string(value)), rev: createRev}
		return
	}
	if !strings.HasPrefix(key, s.dir) {
		return // PREFIX ticketsX...: not ours
	}
	if old, ok := s.keys[key]; ok {
		old.Erase()
		delete(s.keys, key)
	}
	name, ok := recordName(s.dir, key)
	var k tickets.Key
	var err error
	if !ok {
		err = fmt.Errorf("key name is not %d lower-case hex digits", 2*tickets.NameSize)
	} else {
		k, err = tickets.OpenRecord(s.opt.Secret, s.opt.Prefix, name, value)
	}
	if err != nil {
		if s.refused[key] != modRev {
			s.status.RefusedTotal++
			s.log.Warn("ticket ring: ignoring a record that does not open (written with another group secret, moved, or tampered)",
				"key", s.shownKey(key), "mod_revision", modRev, "err", err.Error())
		}
		s.refused[key] = modRev
		return
	}
	delete(s.refused, key)
	s.keys[key] = &k
}

// shownKeyTail bounds what a log line or an error shows of an etcd key
// after the prefix: a record's name is 32 hex digits, an election key's
// lease 16, so a longer key is not one of ours anyway.
const shownKeyTail = 64

// shownKey is an etcd key of ours as a log line or an error shows it:
// escaped and cut short (conf.EscapeBounded), as the directory shows its
// keys. Whoever may write below the prefix chooses the key, of any bytes
// and up to etcd's limit of a megabyte and more, and every gateway logs it.
func (s *Sync) shownKey(key string) string {
	return conf.EscapeBounded(key, len(s.opt.Prefix)+len(electionDir)+1+shownKeyTail)
}

// shownRotatorMax bounds what Status shows of a rotator's identity: ours
// are "HOST pid N", and a host name is at most 64 bytes.
const shownRotatorMax = 96

// shownRotator is a rotator's identity as Status shows it: escaped and cut
// short (conf.EscapeBounded), as the keys are. The other gateways' come
// from the values of their election keys, which whoever may write below
// the prefix chooses, of any bytes and up to etcd's limit of a megabyte
// and more; every gateway would keep the whole value and put it into
// each status reply and show.
func shownRotator(identity string) string {
	return conf.EscapeBounded(identity, shownRotatorMax)
}

func (s *Sync) deleteLocked(key string) {
	delete(s.leaders, key)
	delete(s.refused, key)
	if old, ok := s.keys[key]; ok {
		old.Erase()
		delete(s.keys, key)
	}
}

// pushLocked puts exactly the records' keys into the ring.
func (s *Sync) pushLocked() {
	ks := make([]tickets.Key, 0, len(s.keys))
	for _, k := range s.keys {
		ks = append(ks, *k)
	}
	s.opt.Ring.SetExternalKeys(ks)
	for i := range ks {
		ks[i].Erase()
	}
}
