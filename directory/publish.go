package directory

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// publish keeps this host's endpoint at PREFIX endpoints/ID under a lease:
// granted, written, kept alive; granted again after etcd was away (the old
// lease may have expired); revoked at Close so peers stop using it at once.
func (d *Directory) publish(ctx context.Context) {
	ttl := d.opt.LeaseTTL
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	value, _ := json.Marshal(EndpointRecord{Version: RecordVersion, Endpoint: d.opt.AdvertiseEndpoint})
	key := EndpointKey(d.opt.Prefix, d.opt.AdvertiseID)
	backoff := d.opt.MinBackoff
	for ctx.Err() == nil {
		lease, err := d.publishOnce(ctx, key, string(value), ttl)
		if lease != 0 {
			// Revoked with a context of its own: ctx may be the one ending.
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = d.cli.Revoke(rctx, lease)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errLeaseLost) {
			// It was published and kept alive: etcd answered, so the
			// waits that grew before then are over.
			backoff = d.opt.MinBackoff
		}
		d.log.Warn("directory: publishing this host's endpoint failed; retrying", "key", key, "retry_in", backoff.String(), "err", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, d.opt.MaxBackoff)
	}
}

func (d *Directory) publishOnce(ctx context.Context, key, value string, ttl time.Duration) (clientv3.LeaseID, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	g, err := d.cli.Grant(gctx, int64(ttl/time.Second))
	if err != nil {
		return 0, err
	}
	if _, err := d.cli.Put(gctx, key, value, clientv3.WithLease(g.ID)); err != nil {
		return g.ID, err
	}
	ka, err := d.cli.KeepAlive(ctx, g.ID)
	if err != nil {
		return g.ID, err
	}
	d.log.Info("directory: published this host's endpoint", "key", key, "endpoint", d.opt.AdvertiseEndpoint)
	for range ka {
		// Each response renews the lease; the channel closes when the
		// lease is lost or ctx ends.
	}
	if ctx.Err() != nil {
		return g.ID, ctx.Err()
	}
	return g.ID, errLeaseLost
}

var errLeaseLost = leaseLost{}

type leaseLost struct{}

func (leaseLost) Error() string { return "lease keep-alive ended (etcd away or lease expired)" }
