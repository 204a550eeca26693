package ticketring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"stunnel/tickets"
)

var (
	errNotLeader = errors.New("no longer the elected rotator (a write found another leader)")
	errLeaseLost = errors.New("election lease lost (etcd away longer than the session TTL)")
)

// campaign runs for the rotator's role until ctx ends: a session (lease of
// SessionTTL), a campaign on PREFIX tickets-rotator, and, once elected,
// rotation until the session is lost; then again.
func (s *Sync) campaign(ctx context.Context) {
	ttl := int64((s.opt.SessionTTL + time.Second - 1) / time.Second)
	backoff := s.opt.MinBackoff
	for ctx.Err() == nil {
		led, err := s.campaignOnce(ctx, ttl)
		if ctx.Err() != nil {
			return
		}
		if led || errors.Is(err, errLeaseLost) {
			// etcd answered (it granted the lease this run lost): the
			// waits grown while it did not are over, and a takeover must
			// not wait for them.
			backoff = s.opt.MinBackoff
		}
		if led {
			s.log.Warn("ticket ring: no longer the rotator; campaigning again", "err", err.Error())
		} else {
			s.log.Debug("ticket ring: campaign failed; retrying", "retry_in", backoff.String(), "err", err.Error())
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, s.opt.MaxBackoff)
	}
}

// campaignOnce takes one lease, campaigns with it and leads while it
// lasts. led says whether this gateway was the rotator.
func (s *Sync) campaignOnce(ctx context.Context, ttl int64) (led bool, err error) {
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	g, err := s.cli.Grant(gctx, ttl)
	gcancel()
	if err != nil {
		return false, fmt.Errorf("lease for the election: %w", err)
	}
	// Revoked with a context of its own (ctx may be the one ending): a
	// rotator that stops hands over at once instead of after the TTL.
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.cli.Revoke(rctx, g.ID)
		cancel()
	}()
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(g.ID), concurrency.WithTTL(int(ttl)))
	if err != nil {
		return false, fmt.Errorf("election session: %w", err)
	}
	defer sess.Orphan()
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	watchdog := make(chan struct{})
	go func() {
		defer close(watchdog)
		select {
		case <-sess.Done():
			ccancel()
		case <-cctx.Done():
		}
	}()
	defer func() { ccancel(); <-watchdog }()
	el := concurrency.NewElection(sess, s.elect)
	if err := s.clearDeadCandidates(cctx, g.ID); err != nil {
		return false, fmt.Errorf("campaign: %w", err)
	}
	if err := el.Campaign(cctx, s.opt.Identity); err != nil {
		select {
		case <-sess.Done():
			return false, fmt.Errorf("campaign: %w", errLeaseLost)
		default:
		}
		return false, fmt.Errorf("campaign: %w", err)
	}
	select {
	case <-sess.Done():
		return false, errLeaseLost
	default:
	}
	s.mu.Lock()
	s.status.Role = "rotator"
	s.mu.Unlock()
	s.log.Info("ticket ring: this gateway is the rotator", "identity", s.opt.Identity, "lease_ttl_s", ttl)
	defer func() {
		s.mu.Lock()
		s.status.Role = "follower"
		s.mu.Unlock()
	}()
	return true, s.lead(cctx, sess, el)
}

// clearDeadCandidates puts our election key as Campaign does (Campaign
// then finds it in place) and deletes, among the keys created before it,
// those no lease holds: the election waits for every older key to go, and
// a key without a live lease (written by hand under the prefix, or copied
// by a tool that drops leases, as etcdctl make-mirror does) would never go,
// so no gateway would rotate again. Keys created after ours never stand
// before it, so one pass suffices. A key under a live lease is left to its
// lease: it may be another gateway's, alive.
func (s *Sync) clearDeadCandidates(ctx context.Context, lease clientv3.LeaseID) error {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	own := fmt.Sprintf("%s/%x", s.elect, lease)
	tr, err := s.cli.Txn(gctx).If(clientv3.Compare(clientv3.CreateRevision(own), "=", 0)).
		Then(clientv3.OpPut(own, s.opt.Identity, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(own)).Commit()
	if err != nil {
		return fmt.Errorf("writing our election key: %w", err)
	}
	rev := tr.Header.Revision
	if !tr.Succeeded {
		kvs := tr.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return errLeaseLost // gone between the compare and the get: our lease ended
		}
		rev = kvs[0].CreateRevision
	}
	resp, err := s.cli.Get(gctx, s.elect+"/", clientv3.WithPrefix(), clientv3.WithMaxCreateRev(rev-1), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("reading the election keys: %w", err)
	}
	for _, kv := range resp.Kvs {
		why := "it has no lease"
		if kv.Lease != 0 {
			// etcd deletes a key with its lease, so this is the moment
			// between the two; TTL is -1 for a lease etcd does not know,
			// and 0 for one with under a second left, which a live
			// gateway may still renew.
			ttl, err := s.cli.TimeToLive(gctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				return fmt.Errorf("checking the lease of election key %s: %w", s.shownKey(string(kv.Key)), err)
			}
			if ttl.TTL >= 0 {
				continue
			}
			why = "its lease has ended"
		}
		// Only this version of the key: one rewritten meanwhile (under a
		// lease, say) is someone's again.
		dr, err := s.cli.Txn(gctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).Commit()
		if err != nil {
			return fmt.Errorf("deleting election key %s: %w", s.shownKey(string(kv.Key)), err)
		}
		if dr.Succeeded {
			s.log.Warn("ticket ring: deleted an election key that would have blocked the election forever: "+why,
				"key", s.shownKey(string(kv.Key)), "create_revision", kv.CreateRevision)
		}
	}
	return nil
}

// lead rotates until the session ends or a write finds another leader.
func (s *Sync) lead(ctx context.Context, sess *concurrency.Session, el *concurrency.Election) error {
	failing := false // logged once per run of failures (etcd away: the follower says so too)
	for {
		next, err := s.rotateOnce(ctx, el)
		if err != nil {
			if errors.Is(err, errNotLeader) || ctx.Err() != nil {
				return err
			}
			s.mu.Lock()
			s.status.LastError = err.Error()
			s.mu.Unlock()
			if !failing {
				s.log.Warn("ticket ring: rotation step failed; retrying while the lease lasts", "err", err.Error())
			}
			failing = true
			next = min(time.Second, s.opt.Check)
		} else {
			failing = false
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			select {
			case <-sess.Done():
				return errLeaseLost
			default:
				return ctx.Err()
			}
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// rotateOnce looks at the records as etcd has them now: deletes those
// whose life is over (scheduleOver), and adds a key when none is still in
// the first half of its encrypt-decrypt life (pending keys count). Every
// write is a transaction on our election key still being the leader's.
// It returns how long until the next key is due (at most Check).
func (s *Sync) rotateOnce(ctx context.Context, el *concurrency.Election) (time.Duration, error) {
	now := s.opt.Now()
	next, err := s.rotateAt(ctx, el, now)
	if err == nil {
		s.mu.Lock()
		s.looked = now
		s.mu.Unlock()
	}
	return next, err
}

// record is one record that opened, as the rotator judges it.
type record struct {
	etcdKey   string
	createRev int64
	key       tickets.Key
}

func (s *Sync) rotateAt(ctx context.Context, el *concurrency.Election, now time.Time) (time.Duration, error) {
	s.mu.Lock()
	ed, do := s.ed, s.do
	s.mu.Unlock()
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.cli.Get(gctx, s.dir, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", s.dir, err)
	}
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	// Room for every record up front: an append that moved the opened keys
	// to a larger array would leave their secrets in the old one.
	recs := make([]record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name, ok := recordName(s.dir, string(kv.Key))
		if !ok {
			continue
		}
		k, err := tickets.OpenRecord(s.opt.Secret, s.opt.Prefix, name, kv.Value)
		if err != nil {
			continue // the follower logs and counts it; never ours to delete
		}
		recs = append(recs, record{etcdKey: string(kv.Key), createRev: kv.CreateRevision, key: k})
		k.Erase()
	}
	defer func() {
		for i := range recs {
			recs[i].key.Erase()
		}
	}()
	// etcd's order of creation, which no gateway's clock can reorder.
	slices.SortFunc(recs, func(a, b record) int { return cmp.Compare(a.createRev, b.createRev) })
	over := scheduleOver(recs)
	next := s.opt.Check
	var ended []clientv3.Op
	fresh, sealer := false, false
	for i := range recs {
		k := &recs[i].key
		st := k.State(now)
		switch st {
		case tickets.KeyExpired:
			if over[i] {
				ended = append(ended, clientv3.OpDelete(recs[i].etcdKey))
			}
		case tickets.KeyEncryptDecrypt:
			sealer = true
		}
		if half := k.Created.Add(k.EncryptDecrypt / 2); (st == tickets.KeyPending || st == tickets.KeyEncryptDecrypt) && now.Before(half) {
			fresh = true
			next = min(next, half.Sub(now))
		}
		if st != tickets.KeyExpired {
			next = min(next, k.End().Sub(now))
		}
	}
	if len(ended) > 0 {
		tr, err := s.cli.Txn(gctx).If(guard).Then(ended...).Commit()
		if err != nil {
			return 0, fmt.Errorf("deleting ended ticket keys: %w", err)
		}
		if !tr.Succeeded {
			return 0, errNotLeader
		}
		s.mu.Lock()
		s.status.Deleted += uint64(len(ended))
		s.mu.Unlock()
		s.log.Info("ticket ring: deleted records of ticket keys that ended, by this clock and by the keys added since", "count", len(ended))
	}
	if fresh {
		return max(next, 10*time.Millisecond), nil
	}
	// A key that starts a little later than now when another still seals,
	// so every gateway holds it before any seals with it; at once when none
	// seals (first key, or the group was away longer than a half-life).
	created := now
	if sealer {
		created = now.Add(min(s.opt.Lead, ed/4))
	}
	k, err := tickets.GenerateKey(s.opt.Rand, created, ed, do)
	if err != nil {
		return 0, err
	}
	defer k.Erase()
	rec, err := tickets.SealRecord(s.opt.Secret, s.opt.Prefix, &k, s.opt.Rand)
	if err != nil {
		return 0, err
	}
	key := s.dir + k.NameHex()
	tr, err := s.cli.Txn(gctx).If(guard).Then(clientv3.OpPut(key, string(rec))).Commit()
	if err != nil {
		return 0, fmt.Errorf("adding a ticket key: %w", err)
	}
	if !tr.Succeeded {
		return 0, errNotLeader
	}
	s.mu.Lock()
	s.status.Added++
	s.mu.Unlock()
	s.log.Info("ticket ring: added a ticket key", "name", k.NameHex(), "seals_from", created.UTC().Format(time.RFC3339Nano),
		"decrypt_only_from", k.EncryptUntil().UTC().Format(time.RFC3339), "ends", k.End().UTC().Format(time.RFC3339))
	return max(min(next, created.Add(ed/2).Sub(now)), 10*time.Millisecond), nil
}

// scheduleOver says, for records in etcd's order of creation, which ones
// the group's own key schedule shows to be past their life. A record is
// deleted for the whole group, so the rotator's clock alone must not
// decide it: a clock stepped forward (NTP, a badly set clock) would see
// every key as ended and take from the other gateways the keys they seal
// and open with. Leases (etcd's clock) were the other way; but etcd 3.4
// and 3.5 restart every lease's TTL at each leader change, so records
// living hours would outlive their keys for as long as the cluster changes
// leader more often than that, and records written without one (before
// this rule, or by hand) would never go.
//
// The schedule: a key is added only once no key is in the first half of
// its encrypt-decrypt life, so between one record's creation and the
// next's passes at least half of the earlier key's encrypt-decrypt life.
// A record's life is therefore over once the half-lives of it and of the
// keys added after it, but the newest, add up to its whole life. One of
// those gaps may have been cut short (a rotator whose clock stepped forward
// adds at once, as one that finds every key ended must), so the longest is
// not counted. In normal operation a record goes about half an
// encrypt-decrypt life after its key ended, and the newest never goes;
// every gateway erases a key from memory at its end by its own clock, so
// a record kept longer holds nothing open.
func scheduleOver(recs []record) []bool {
	over := make([]bool, len(recs))
	var sum, longest time.Duration
	for i := len(recs) - 2; i >= 0; i-- {
		k := &recs[i].key
		half := k.EncryptDecrypt / 2
		sum = addCapped(sum, half)
		longest = max(longest, half)
		over[i] = sum-longest >= addCapped(k.EncryptDecrypt, k.DecryptOnly)
	}
	return over
}

// addCapped is a+b for non-negative durations, capped at the largest one:
// lifetimes near the largest the config takes (292 years, "never") would
// wrap negative when added, and a record would look over at once.
func addCapped(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
