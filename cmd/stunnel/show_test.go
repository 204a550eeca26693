package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/tunnel"
	"stunnel/tunnel/control"
)

var showNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return showNow }

func cannedStatus(name string) tunnel.Status {
	hs := showNow.Add(-72 * time.Second)
	return tunnel.Status{
		Name:       name,
		PeerID:     "site-a",
		PublicKey:  "AAAApubA=",
		ListenPort: 51820,
		Peers: []tunnel.PeerStatus{{
			ID:            "site-b",
			PublicKey:     "BBBBpubB=",
			Endpoint:      "198.18.0.2:51820",
			AllowedIPs:    []string{"198.19.0.2/32", "198.19.20.0/24"},
			LastHandshake: &hs,
			Handshakes:    3,
			SessionID:     "0123456789abcdef",
			Cipher:        "chacha20poly1305",
			RxBytes:       1536,
			TxBytes:       3 << 20,
			Drops:         map[string]uint64{tunnel.DropReplayed: 2, tunnel.DropAuthFailed: 0, tunnel.DropNoKey: 1},
		}, {
			ID:         "site-c",
			PublicKey:  "CCCCpubC=",
			AllowedIPs: []string{"198.19.0.3/32"},
			Drops:      map[string]uint64{},
			LastError:  "no reply to handshake initiation after 5s",
		}},
		Drops: map[string]uint64{tunnel.DropUnknownIndex: 4, tunnel.DropBadMAC1: 0},
		Refusals: []tunnel.Refusal{{
			PeerID: "mallory", Reason: "unknown peer id", Endpoint: "198.18.0.9:4444",
			Count: 5, Last: showNow.Add(-time.Hour - 2*time.Second),
		}},
	}
}

const cannedHuman = `interface: st0
  peer id: site-a
  public key: AAAApubA=
  listening port: 51820

peer: site-b
  public key: BBBBpubB=
  endpoint: 198.18.0.2:51820
  allowed ips: 198.19.0.2/32, 198.19.20.0/24
  latest handshake: 1 minute, 12 seconds ago
  transfer: 1.50 KiB received, 3.00 MiB sent
  session: 01234567 (chacha20poly1305)
  drops: no_key 1, replayed 2

peer: site-c
  public key: CCCCpubC=
  endpoint: (none yet)
  allowed ips: 198.19.0.3/32
  latest handshake: never
  transfer: 0 B received, 0 B sent
  last error: no reply to handshake initiation after 5s

interface drops: unknown_index 4

refused handshakes:
  "mallory" from 198.18.0.9:4444: unknown peer id (5 times, last 1 hour, 2 seconds ago)
`

// serve starts a control server for name answering with st; it stops when
// the test ends.
func serve(t *testing.T, name string, st tunnel.Status) {
	t.Helper()
	listenControl(t, name, control.Handlers{Status: func() ([]byte, error) { return json.Marshal(st) }})
}

func show(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runShow(args, &out, &errb, fixedNow)
	return code, out.String(), errb.String()
}

func TestShowHuman(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	serve(t, "st0", cannedStatus("st0"))
	code, out, errs := show()
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if out != cannedHuman {
		t.Errorf("got:\n%s\nwant:\n%s", out, cannedHuman)
	}
}

func TestShowJSON(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	serve(t, "st1", cannedStatus("st1"))
	serve(t, "st0", cannedStatus("st0"))
	code, out, errs := show("--json")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var got []tunnel.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not a JSON array of Status: %v\n%s", err, out)
	}
	want := []tunnel.Status{cannedStatus("st0"), cannedStatus("st1")}
	// Times come back without the monotonic reading; compare as JSON.
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if !bytes.Equal(wb, gb) {
		t.Errorf("JSON round trip differs:\ngot  %s\nwant %s", gb, wb)
	}
	// Stable, indented output: the same bytes twice, fields in order.
	if _, again, _ := show("--json"); again != out {
		t.Error("two runs printed different JSON")
	}
	if !strings.HasPrefix(out, "[\n  {\n    \"name\": \"st0\",") || !strings.HasSuffix(out, "]\n") {
		t.Errorf("not the indented array expected:\n%.200s", out)
	}
	// Human format lists both, sorted by name.
	_, human, _ := show()
	if i, j := strings.Index(human, "interface: st0"), strings.Index(human, "interface: st1"); i < 0 || j < i {
		t.Errorf("human output should list st0 then st1:\n%s", human)
	}
}

func writeConfig(t *testing.T, name string) string {
	t.Helper()
	priv, err := handshake.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := handshake.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`[interface]
name = %q
peer_id = "site-a"
private_key = %q
listen_port = 51820
address = ["198.19.0.1/24"]

[[peer]]
id = "site-b"
public_key = %q
allowed_ips = ["198.19.0.2/32"]
`, name, priv.Base64(), peer.PublicKey().String())
	path := filepath.Join(t.TempDir(), "st.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestShowConfigPicksInterface(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	serve(t, "st0", cannedStatus("st0"))
	serve(t, "st7", cannedStatus("st7"))
	code, out, errs := show("-c", writeConfig(t, "st7"), "--json")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var got []tunnel.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].Name != "st7" {
		t.Errorf("want only st7, got %v (%v)", got, err)
	}

	// The config's tunnel is not running, though another one is.
	code, out, errs = show("-c", writeConfig(t, "st9"))
	if code != 1 || out != "" || !strings.Contains(errs, "no tunnel running") || strings.Count(errs, "\n") != 1 {
		t.Errorf("st9 not running: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestShowNothingRunning(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(control.RunDirEnv, dir)
	code, out, errs := show()
	if code != 1 || out != "" || errs != "stunnel show: no tunnel running (no control socket in "+dir+")\n" {
		t.Errorf("no socket: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// A stale socket file (its daemon died): connection refused.
	stale := control.SocketPath("st0")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	code, out, errs = show("--json")
	if code != 1 || out != "" || !strings.Contains(errs, "no tunnel running at "+stale) || strings.Count(errs, "\n") != 1 {
		t.Errorf("stale socket: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestShowBadUsage(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	for _, args := range [][]string{{"extra"}, {"--bogus"}, {"-c"}, {"-c", "/nonexistent/st.toml"}} {
		code, out, errs := show(args...)
		if code != 1 || out != "" || errs == "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("show %v: exit %d, stdout %q, stderr %q; want exit 1 and one line", args, code, out, errs)
		}
	}
	// Two output formats at once: refused as usage, before any socket is
	// looked for (nothing runs here, which would be the other error).
	code, out, errs := show("--json", "--metrics")
	if code != 1 || out != "" || !strings.Contains(errs, "--json and --metrics") || strings.Count(errs, "\n") != 1 {
		t.Errorf("show --json --metrics: exit %d, stdout %q, stderr %q; want exit 1 and the usage error", code, out, errs)
	}
}

func TestAgoAndBytes(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                              "just now",
		1 * time.Second:                "1 second ago",
		12 * time.Second:               "12 seconds ago",
		61 * time.Second:               "1 minute, 1 second ago",
		2*time.Hour + 3*time.Second:    "2 hours, 3 seconds ago",
		49 * time.Hour:                 "2 days, 1 hour ago",
		-5 * time.Second:               "in the future (clock skew?)",
		1500 * time.Millisecond:        "1 second ago",
		24*time.Hour - time.Nanosecond: "23 hours, 59 minutes, 59 seconds ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1536: "1.50 KiB", 5 << 30: "5.00 GiB",
		1 << 62: "4096.00 PiB",
	} {
		if got := bytesHuman(n); got != want {
			t.Errorf("bytesHuman(%d) = %q, want %q", n, got, want)
		}
	}
	if !reflect.DeepEqual(dropsLine(map[string]uint64{"b": 0}), "") {
		t.Error("zero drops should print nothing")
	}
}

// A leftover socket of a dead daemon next to a live one: show the live one,
// quietly, and succeed.
func TestShowSkipsStaleBesideLive(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	serve(t, "st0", cannedStatus("st0"))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: control.SocketPath("st1"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	code, out, errs := show()
	if code != 0 || errs != "" || out != cannedHuman {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
}

// A gateway group: the endpoint in use, those standing by and the
// failovers, in the text and in JSON; a single endpoint prints neither line.
func TestShowGatewayGroup(t *testing.T) {
	st := cannedStatus("st0")
	st.Peers[0].Endpoint = "198.18.2.2:51820"
	st.Peers[0].StandbyEndpoints = []string{"198.18.2.1:51820"}
	st.Peers[0].Failovers = 1
	var out bytes.Buffer
	writeStatus(&out, &st, showNow)
	for _, want := range []string{"  endpoint: 198.18.2.2:51820\n  standby endpoints: 198.18.2.1:51820\n  failovers: 1\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
	js, err := json.Marshal(st.Peers[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"standby_endpoints":["198.18.2.1:51820"]`) || !strings.Contains(string(js), `"failovers":1`) {
		t.Errorf("JSON lacks the group: %s", js)
	}
	plain := cannedStatus("st0")
	out.Reset()
	writeStatus(&out, &plain, showNow)
	if strings.Contains(out.String(), "standby") || strings.Contains(out.String(), "failovers") {
		t.Errorf("a single endpoint shows group lines:\n%s", out.String())
	}
}

// TestShowTokenKey: show says that the key is in a token, where it came
// from, and that the token does not answer; nothing for a key in the file
// (TestShowHuman).
func TestShowTokenKey(t *testing.T) {
	st := cannedStatus("st0")
	st.Peers, st.Drops, st.Refusals = nil, nil, nil
	for _, c := range []struct {
		key  tunnel.StaticKeyStatus
		want string
	}{
		{tunnel.StaticKeyStatus{Origin: "generated"}, "  listening port: 51820\n  private key: in a PKCS#11 token, generated in the token\n"},
		{tunnel.StaticKeyStatus{Origin: "imported", Hung: true, Unanswered: 12},
			"  private key: in a PKCS#11 token, imported into the token: a copy may exist outside it\n" +
				"  token: not answering; handshakes fail until it does\n  token operations unanswered: 12\n"},
	} {
		st.StaticKey = &c.key
		var b bytes.Buffer
		writeStatus(&b, &st, showNow)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("show with static key %+v:\n%s\nwant it to contain:\n%s", c.key, b.String(), c.want)
		}
	}
}
