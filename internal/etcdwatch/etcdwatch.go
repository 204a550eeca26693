// Package etcdwatch is the watch half of the daemon's list-and-watch loops
// on etcd (the peer directory, the ticket ring): a watch from the revision
// after a list, with a health check beside it, because a watch alone stays
// silent while the cluster is gone.
//
// Health bound: once etcd stops answering, Run returns within two health
// intervals (up to one until the next check, up to one for the check to
// time out), whatever the watch is doing, even while it waits for its
// stream to come up.
package etcdwatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrCompacted says the revision to watch from was compacted away: the
// caller lists again, the only way to learn what the compaction removed.
var ErrCompacted = errors.New("watch revision compacted")

// Options say what Run watches and checks.
type Options struct {
	Prefix    string // the keys watched (WithPrefix)
	HealthKey string // the key the health check reads (count only)
	// HealthInterval is the time between two health checks and each
	// one's limit.
	HealthInterval time.Duration
	// Apply takes each watch response that carries events (progress
	// notifications are not passed on).
	Apply func(clientv3.WatchResponse)
	// Healthy, if set, runs after each health check that passed.
	Healthy func()
}

// Run applies the events under o.Prefix from revision from on until ctx
// ends (ctx.Err()), the watch breaks (ErrCompacted, or another error) or the
// health check fails. It never returns nil.
func Run(ctx context.Context, cli *clientv3.Client, from int64, o Options) error {
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel() // also ends a Watch call still waiting for its stream
	// Watch blocks until its stream is up, for as long as etcd is away:
	// etcd gone between the list and the stream must still fail the
	// health check, so the call waits beside it, not before it.
	started := make(chan clientv3.WatchChan, 1)
	go func() { started <- cli.Watch(wctx, o.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) }()
	var wch clientv3.WatchChan // nil (never ready) until the stream is up
	health := time.NewTicker(o.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wch = <-started:
		case <-health.C:
			if err := healthy(ctx, cli, o); err != nil {
				return err
			}
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch closed")
			}
			if wr.CompactRevision != 0 {
				return ErrCompacted
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			if len(wr.Events) == 0 {
				continue // progress notification
			}
			o.Apply(wr)
		}
	}
}

// healthy is a linearizable read of one key: it needs a quorum, so it
// fails when the cluster (or our way to it) is gone.
func healthy(ctx context.Context, cli *clientv3.Client, o Options) error {
	hctx, cancel := context.WithTimeout(ctx, o.HealthInterval)
	defer cancel()
	if _, err := cli.Get(hctx, o.HealthKey, clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if o.Healthy != nil {
		o.Healthy()
	}
	return nil
}
