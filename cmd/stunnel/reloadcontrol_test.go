package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/tunnel"
	"stunnel/tunnel/udpbind"
)

// [control] and [metrics] are read at start only: a reload that changes
// them says so, and the running configuration keeps what the sockets and
// the metrics listener really use, so every later reload says it again
// until a restart. Otherwise a second reload (for a peer, say) is silent
// and an operator who took a group out of operate_group believes its
// members lost the role they still hold.
func TestReloadKeepsStartControlAndMetrics(t *testing.T) {
	r := startForReload(t, "\n[control]\noperate_group = \"users\"\n")
	want := r.start.Control
	// operate_group taken out, metrics added: both wait for a restart.
	r.write(r.head + "\n[metrics]\nlisten = \"127.0.0.1:9586\"\n")
	r.reloadTwice(t, "[control] and [metrics] changes take effect at the next restart", func(i int, running *conf.Config) {
		if running.Control != want || running.Metrics != r.start.Metrics {
			t.Errorf("after reload %d: running [control] %+v [metrics] %+v; want the start's %+v %+v, which the daemon still uses",
				i, running.Control, running.Metrics, want, r.start.Metrics)
		}
	})
}

// A [directory] added by a reload starts no watcher (that needs a restart):
// the reload says so, every time, and does not pretend to run it.
func TestReloadSaysAnAddedDirectoryWaits(t *testing.T) {
	r := startForReload(t, "")
	r.write(r.head + "\n[directory]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/t/\"\nrecords_within = [\"198.19.0.0/16\"]\n")
	r.reloadTwice(t, "[directory] was added; the directory starts at the next restart", func(i int, running *conf.Config) {
		if running.Directory != nil {
			t.Errorf("after reload %d: the running configuration has a [directory] no watcher reads", i)
		}
	})
}

// reloadTest is a device started from a config file that a test rewrites
// and reloads: head is the file's [interface] and one [[peer]].
type reloadTest struct {
	head  string
	write func(text string)
	start *conf.Config
	d     *tunnel.Device
	bind  *udpbind.Bind
	logs  bytes.Buffer
	log   *slog.Logger
}

func startForReload(t *testing.T, extra string) *reloadTest {
	t.Helper()
	priv, _ := handshake.GeneratePrivateKey(nil)
	peer, _ := handshake.GeneratePrivateKey(nil)
	path := filepath.Join(t.TempDir(), "st6.toml")
	r := &reloadTest{head: fmt.Sprintf("[interface]\nname = \"st6\"\npeer_id = \"a\"\nprivate_key = %q\naddress = [\"198.19.0.1/24\"]\nlisten_port = 0\n"+
		"\n[[peer]]\nid = \"b\"\npublic_key = %q\nallowed_ips = [\"198.19.0.2/32\"]\n", priv.Base64(), peer.PublicKey())}
	r.write = func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.write(r.head + extra)
	var err error
	if r.start, err = conf.Load(path); err != nil {
		t.Fatal(err)
	}
	r.log = slog.New(slog.NewTextHandler(&r.logs, nil))
	r.bind = udpbind.New()
	if r.d, err = tunnel.New(r.start, tunnel.Options{TUN: newChanTUN(), Bind: r.bind, Logger: r.log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.d.Close() })
	return r
}

// reloadTwice reloads the file twice, each from the configuration the one
// before left running: each reload must succeed and log warning once more
// (a change that waits for a restart is said at every reload), and check
// sees what runs after it.
func (r *reloadTest) reloadTwice(t *testing.T, warning string, check func(i int, running *conf.Config)) {
	t.Helper()
	running := r.start
	for i := 1; i <= 2; i++ {
		next, err := reload(running, r.d, nil, r.bind, &endpointResolver{}, r.log, new(slog.LevelVar), nil)
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		running = next
		if n := strings.Count(r.logs.String(), warning); n != i {
			t.Errorf("after reload %d: %d warnings %q, want %d\n%s", i, n, warning, i, r.logs.String())
		}
		check(i, running)
	}
}
