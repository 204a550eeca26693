package main

import (
	"errors"

	"stunnel/conf"
	"stunnel/tunnel/netcfg"
)

// startLink brings up the device's addresses and routes for cfg, the
// start's merged config (initial, its MTU chosen), through apply
// (netcfg.Apply in up), treating directory records as a change or a reload
// does (applyMergedLocked): a record whose route the kernel refuses
// (another interface routes its prefix) is left out and logged, and the
// tunnel starts with the rest. Failing the start instead let one record,
// which anyone who may write to etcd can make, keep every host where that
// prefix is routed elsewhere down, in a restart loop under systemd. A
// refused route of a [[peer]] of the file still fails the start.
//
// It returns the config to run: cfg when every route went in, else a new
// merge without the records left out, with cfg's MTU, and cfg's copies of
// the secrets zeroed. The records left out stay in s.running, as after a
// change: they are tried again at the next change or reload.
func (s *dirSync) startLink(cfg *conf.Config, apply func(*conf.Config) (*netcfg.Link, error)) (*conf.Config, *netcfg.Link, error) {
	link, err := apply(cfg)
	var re *netcfg.RouteError
	if err == nil || !errors.As(err, &re) {
		return cfg, link, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := directoryPeerRouting(cfg, s.file, re.Prefix); !ok {
		return cfg, nil, err // a [[peer]]'s route
	}
	mtu, auto := cfg.Interface.MTU, cfg.Interface.MTUAuto
	merged, err := s.applyMergedLocked(s.file, func(c *conf.Config) error {
		c.Interface.MTU, c.Interface.MTUAuto = mtu, auto
		var aerr error
		link, aerr = apply(c)
		return aerr
	})
	if err != nil {
		zeroConfigSecrets(merged)
		return cfg, nil, err
	}
	zeroConfigSecrets(cfg)
	return merged, link, nil
}
