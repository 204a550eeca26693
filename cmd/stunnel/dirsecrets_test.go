package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"stunnel/conf"
)

// With [directory] the daemon keeps the file's config (dirSync.file) to
// merge each directory change with, so the file's private key and
// pre-shared keys stay in it. A reload replaces it with the new file's: the
// one replaced must be zeroed, as every other copy of the config's secrets
// is once the device holds its own (zeroConfigSecrets), not left in the
// heap with the keys in it, one more copy at every reload.
func TestReloadZeroesTheReplacedFileConfig(t *testing.T) {
	priv, psk := mustGenKey(t), mustGenKey(t)
	kb := mustGenKey(t)
	src := "[interface]\nname = \"zr0\"\npeer_id = \"a\"\nprivate_key = \"" + priv.Base64() + "\"\naddress = [\"198.19.0.1/24\"]\nlisten_port = 0\n" +
		"[[peer]]\nid = \"b\"\npublic_key = \"" + kb.PublicKey().String() + "\"\npreshared_key = \"" + psk.Base64() + "\"\nallowed_ips = [\"198.19.0.2/32\"]\n" +
		"[directory]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/zr/\"\n"
	path := filepath.Join(t.TempDir(), "zr0.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ds := &dirSync{dir: &fixedDir{peers: []conf.Peer{attachTestPeer("z", "198.19.0.9/32")}}, log: log, file: file, reported: map[string]bool{}}
	running := ds.initial()
	d := newAttachTestDevice(t, running)
	t.Cleanup(func() { d.Close() })
	ds.attach(d, nil)
	zeroConfigSecrets(running) // as up does once the device runs

	next, err := reload(running, d, nil, nil, &endpointResolver{}, log, new(slog.LevelVar), ds)
	if err != nil {
		t.Fatal(err)
	}
	if got := devicePeerIDs(d); len(got) != 2 {
		t.Fatalf("device peers after the reload: %v, want b and z", got)
	}
	if ds.file == file {
		t.Fatal("the reload did not replace the kept file config")
	}
	if !file.Interface.PrivateKey.IsZero() {
		t.Error("the replaced file config still holds the private key")
	}
	if !file.Peers[0].PresharedKey.IsZero() {
		t.Error("the replaced file config still holds peer b's pre-shared key")
	}
	// What the daemon needs is still there: the kept config has the keys,
	// and a directory change merges with them.
	if ds.file.Interface.PrivateKey != priv || ds.file.Peers[0].PresharedKey.IsZero() {
		t.Error("the kept file config lost its keys")
	}
	ds.onChange([]conf.Peer{attachTestPeer("y", "198.19.0.8/32")})
	if got := devicePeerIDs(d); len(got) != 2 || got[1] != "y" {
		t.Errorf("device peers after a directory change: %v, want b and y", got)
	}
	zeroConfigSecrets(next)
}
