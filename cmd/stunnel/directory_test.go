package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"stunnel/directory"
	"stunnel/handshake"
	"stunnel/internal/etcdtest"
)

func directoryConfig(t *testing.T, endpoint string) string {
	t.Helper()
	dir := t.TempDir()
	priv, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "st0.conf")
	body := fmt.Sprintf(`[interface]
name = "st0"
peer_id = "ops"
private_key = %q
address = ["10.77.0.1/24"]

[directory]
etcd_endpoints = [%q]
prefix = "/stunnel/test/"
cache_file = "st0.directory"
`, priv.Base64(), endpoint)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDirectoryCommand(t *testing.T) {
	m := etcdtest.Start(t)
	cfg := directoryConfig(t, m.ClientURL)
	k, _ := handshake.GeneratePrivateKey(nil)
	pub := k.PublicKey().String()

	_, stderr, code := runStunnel(t, "", "directory", "put", "-c", cfg, "-id", "host-b", "-public-key", pub,
		"-allowed-ips", "10.77.0.2/32,192.168.2.0/24", "-endpoint", "198.18.0.2:51820", "-persistent-keepalive", "25s")
	if code != 0 {
		t.Fatalf("put: exit %d: %s", code, stderr)
	}
	out, stderr, code := runStunnel(t, "", "directory", "list", "-c", cfg, "-json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	var listed struct {
		Revision int64
		Records  []struct {
			ID, PublicKey, Endpoint, PersistentKeepalive string
			AllowedIPs                                   []string `json:"allowed_ips"`
		}
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("list -json: %v\n%s", err, out)
	}
	if len(listed.Records) != 1 || listed.Records[0].ID != "host-b" || strings.Join(listed.Records[0].AllowedIPs, ",") != "10.77.0.2/32,192.168.2.0/24" {
		t.Fatalf("list: %s", out)
	}
	out, _, _ = runStunnel(t, "", "directory", "list", "-c", cfg)
	if !strings.Contains(out, "host-b\t"+pub) || !strings.Contains(out, "endpoint=198.18.0.2:51820") {
		t.Fatalf("list text: %s", out)
	}

	// Bad input: exit 2, nothing written.
	for _, args := range [][]string{
		{"put", "-c", cfg, "-id", "x", "-public-key", "AAAA", "-allowed-ips", "10.77.0.3/32"},
		{"put", "-c", cfg, "-id", "x", "-public-key", pub, "-allowed-ips", "10.77.0.3/24"},
		{"put", "-c", cfg, "-id", "x", "-public-key", pub},
		{"put", "-c", cfg, "-id", "", "-public-key", pub, "-allowed-ips", "10.77.0.3/32"},
		{"put", "-c", cfg, "-id", "x", "-public-key", pub, "-allowed-ips", "10.77.0.3/32", "-endpoint", "nope"},
		{"put", "-c", cfg, "-id", "eu/x", "-public-key", pub, "-allowed-ips", "10.77.0.3/32"}, // an ID is the key's last part
		{"delete", "-c", cfg, "eu/peers/x"},
		{"delete", "-c", cfg, ""}, // no ID: the key PREFIX peers/ itself, which is no record
		{"delete", "-c", cfg},
		{"list", "-c", cfg, "-timeout", "0s"},
		{"delete", "-c", cfg, "-timeout", "-1s", "host-b"},
		{"frobnicate", "-c", cfg},
		{"list"},
	} {
		_, stderr, code := runStunnel(t, "", append([]string{"directory"}, args...)...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") > 8 || strings.Contains(stderr, "goroutine") {
			t.Errorf("directory %v: exit %d, want 2: %s", args, code, stderr)
		}
	}
	_, _, code = runStunnel(t, "", "directory", "delete", "-c", cfg, "host-b")
	if code != 0 {
		t.Fatalf("delete: exit %d", code)
	}
	_, stderr, code = runStunnel(t, "", "directory", "delete", "-c", cfg, "host-b")
	if code != 1 || !strings.Contains(stderr, `no record for peer "host-b"`) {
		t.Fatalf("deleting again: exit %d, want 1: %s", code, stderr)
	}
	// etcd answered: the line says where to look, not to check that etcd
	// runs or that we may write.
	if strings.Contains(stderr, "etcd runs") || strings.Contains(stderr, "may write") || !strings.Contains(stderr, "directory list") {
		t.Errorf("deleting again: %q; want the missing record named and list suggested, no advice about etcd", stderr)
	}
	// A list that fails asks whether this host may read, not write.
	_, stderr, code = runStunnel(t, "", "directory", "list", "-c", directoryConfig(t, "http://127.0.0.1:1"), "-timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "may read /stunnel/test/") {
		t.Errorf("list with etcd away: exit %d, %q; want exit 1 asking whether this host may read the prefix", code, stderr)
	}
	out, _, _ = runStunnel(t, "", "directory", "list", "-c", cfg)
	if !strings.Contains(out, "0 records") {
		t.Fatalf("list after delete: %s", out)
	}

	// A key written with etcdctl whose ID holds a newline and tabs is one
	// malformed line, not a forged record line below it.
	cli, err := directory.Dial([]string{m.ClientURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	forged := "x\nhost-z\t" + pub + "\t0.0.0.0/0\t\x1b[2K"
	if _, err := cli.Put(context.Background(), "/stunnel/test/peers/"+forged, "{"); err != nil {
		t.Fatal(err)
	}
	out, _, _ = runStunnel(t, "", "directory", "list", "-c", cfg)
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 2 || strings.ContainsRune(out, 0x1b) ||
		!strings.HasPrefix(lines[1], strconv.Quote(forged)+"\tMALFORMED") {
		t.Fatalf("list of a record whose ID holds control characters:\n%s", out)
	}
	if _, err := cli.Delete(context.Background(), "/stunnel/test/peers/"+forged); err != nil {
		t.Fatal(err)
	}

	// etcd gone: exit 1, one line.
	m.Stop()
	_, stderr, code = runStunnel(t, "", "directory", "list", "-c", cfg, "-timeout", "1s")
	if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("list with etcd down: exit %d, want 1: %q", code, stderr)
	}
}

func TestCheckRefusesPlainHTTPToRemoteEtcd(t *testing.T) {
	cfg := directoryConfig(t, "http://198.18.0.10:2379")
	_, stderr, code := runStunnel(t, "", "check", "-c", cfg)
	if code != 2 || !regexp.MustCompile(`st0\.conf:8: etcd_endpoints .*plain http`).MatchString(stderr) {
		t.Fatalf("check: exit %d: %s", code, stderr)
	}
	_, _, code = runStunnel(t, "", "check", "-c", directoryConfig(t, "https://198.18.0.10:2379"))
	if code != 0 {
		t.Fatalf("check of an https endpoint: exit %d", code)
	}
}

// A first word that is no subcommand is named as such (exit 2), before the
// flags are looked at: it used to say "-c FILE is required" even with -c.
func TestDirectoryUnknownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"directory", "lst", "-c", "x.toml"}, {"directory", "-c", "x.toml", "list"}, {"directory", "foo"}} {
		_, stderr, code := runStunnel(t, "", args...)
		if code != 2 || !strings.HasPrefix(stderr, fmt.Sprintf("stunnel directory: unknown subcommand %q", args[1])) {
			t.Errorf("stunnel %v: exit %d, stderr %q; want exit 2 naming the unknown subcommand", args, code, stderr)
		}
	}
}
