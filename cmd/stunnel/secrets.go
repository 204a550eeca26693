package main

import "stunnel/conf"

// zeroConfigSecrets overwrites the keys a parsed configuration holds once
// the tunnel has its own copies (after tunnel.New or Device.Reload), or when
// the configuration is thrown away: the daemon keeps the running config for
// its path and addresses, never for its keys, so a removed peer's PSK does
// not linger in it (issue 12, finding 6).
func zeroConfigSecrets(cfg *conf.Config) {
	if cfg == nil {
		return
	}
	cfg.Interface.PrivateKey.Zero()
	for i := range cfg.Peers {
		cfg.Peers[i].PresharedKey.Zero()
	}
}
