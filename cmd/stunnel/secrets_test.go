package main

import (
	"testing"

	"stunnel/conf"
	"stunnel/handshake"
)

func TestZeroConfigSecrets(t *testing.T) {
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &conf.Config{Interface: conf.Interface{PrivateKey: k}, Peers: []conf.Peer{{PresharedKey: handshake.PresharedKey(k)}, {}}}
	zeroConfigSecrets(cfg)
	if !cfg.Interface.PrivateKey.IsZero() || !cfg.Peers[0].PresharedKey.IsZero() {
		t.Fatal("keys left in the configuration")
	}
	zeroConfigSecrets(nil)
}
