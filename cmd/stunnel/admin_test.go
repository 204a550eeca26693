package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"stunnel/conf"
	"stunnel/tunnel/control"
)

// listenControl starts a control server for name with handlers h; it stops
// when the test ends.
func listenControl(t *testing.T, name string, h control.Handlers) {
	t.Helper()
	s, err := control.Listen(control.Config{Name: name, Handlers: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
}

// serveAdmin starts a control server for name whose actions are recorded.
func serveAdmin(t *testing.T, name string) *[]string {
	t.Helper()
	var mu sync.Mutex
	var done []string
	rec := func(s string) { mu.Lock(); done = append(done, s); mu.Unlock() }
	listenControl(t, name, control.Handlers{
		Status: func() ([]byte, error) { return []byte(`{"name":"` + name + `"}`), nil },
		Reload: func() (string, error) {
			rec("reload")
			return "", errors.New("reload failed, running configuration kept: x.toml:3: bad")
		},
		Rekey: func(p string) error {
			if p != "site-b" {
				return control.NotFound(errors.New(`peer "` + p + `": no such peer`))
			}
			rec("rekey " + p)
			return nil
		},
		Disconnect: func(p string) error { rec(name + " disconnect " + p); return nil },
	})
	return &done
}

func admin(cli, command, argName string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runAdmin(cli, command, argName, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAdminCommands(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	done := serveAdmin(t, "st0")

	// Alone, the tunnel is found without -c or -i; flags go before or after the argument.
	for _, args := range [][]string{{"site-b"}, {"-i", "st0", "site-b"}, {"site-b", "-i", "st0"}, {"-c", writeConfig(t, "st0"), "site-b"}} {
		if code, out, errs := admin("rekey", "rekey", "PEER", args...); code != 0 || out != "new handshake with site-b requested\n" || errs != "" {
			t.Errorf("rekey %v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, errs := admin("rekey", "rekey", "PEER", "-i", "st0", "nobody"); code != 1 || errs != "stunnel rekey: peer \"nobody\": no such peer\n" {
		t.Errorf("unknown peer: exit %d, stderr %q", code, errs)
	}
	if code, out, errs := admin("reload", "reload", "", "-i", "st0"); code != 1 || out != "" || errs != "stunnel reload: failed, running configuration kept: x.toml:3: bad\n" {
		t.Errorf("failed reload: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := admin("state save", "state save", "", "-i", "st0"); code != 1 || errs != "stunnel state save: not available in this build yet\n" {
		t.Errorf("state save: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := admin("tickets retire", "tickets retire", "KEY-ID", "-i", "st0", "k1"); code != 1 || !strings.Contains(errs, "not available in this build yet") {
		t.Errorf("tickets retire: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := admin("rekey", "rekey", "PEER", "-i", "st5", "site-b"); code != 1 || !strings.Contains(errs, "no tunnel running at ") {
		t.Errorf("not running: exit %d, stderr %q", code, errs)
	}

	// Two tunnels: one must be picked.
	serveAdmin(t, "st1")
	if code, _, errs := admin("disconnect", "disconnect", "PEER", "site-b"); code != 1 || !strings.Contains(errs, "2 tunnels run here; pick one with -c FILE or -i NAME") {
		t.Errorf("ambiguous: exit %d, stderr %q", code, errs)
	}
	if code, _, _ := admin("disconnect", "disconnect", "PEER", "-i", "st1", "site-b"); code != 0 {
		t.Errorf("disconnect -i st1: exit %d", code)
	}
	want := []string{"rekey site-b", "rekey site-b", "rekey site-b", "rekey site-b", "reload"}
	if strings.Join(*done, ",") != strings.Join(want, ",") {
		t.Errorf("st0 did %v, want %v", *done, want)
	}

	for _, c := range []struct {
		argName string
		args    []string
		want    string
	}{
		{"PEER", nil, "missing PEER"},
		{"PEER", []string{"a", "b"}, `unexpected argument "b"`},
		{"", []string{"x"}, `unexpected argument "x"`},
		{"PEER", []string{"-c", "f", "-i", "st0", "a"}, "give -c FILE or -i NAME, not both"},
		{"PEER", []string{"-i", "../x", "a"}, `-i "../x" is not a valid interface name`},
		{"PEER", []string{"-i", "st0:operate", "a"}, "is not a valid interface name"},
		{"PEER", []string{"--bogus"}, "flag provided but not defined"},
	} {
		// rekey's contract is 0 or 1; tickets' has 2 for bad input.
		code, out, errs := admin("rekey", "rekey", c.argName, c.args...)
		if code != 1 || out != "" || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("rekey %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.args, code, out, errs, c.want)
		}
		code, out, errs = admin("tickets retire", "tickets retire", c.argName, c.args...)
		if code != 2 || out != "" || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("tickets retire %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, errs, c.want)
		}
	}
}

// PRODUCT.md gives rekey, disconnect, reload and state save the exit codes
// 0 and 1 only: the built binary exits 1, not 2, when the -c FILE it is
// given does not parse or names no tunnel, or its usage is wrong; tickets,
// whose row has "2 bad input", still exits 2.
func TestOperateCommandsExitOneOnBadInput(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.toml")
	noName := filepath.Join(dir, "noname.toml")
	for p, text := range map[string]string{broken: "[interface]\nname = \"st0\"\nmtu = = 1\n", noName: "[interface]\npeer_id = \"a\"\n"} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"reload", "-c", broken}, 1, broken + ":3: TOML syntax"},
		{[]string{"reload", "-c", noName}, 1, noName + ": [interface] has no name"},
		{[]string{"reload", "-c", filepath.Join(dir, "missing.toml")}, 1, "cannot read config"},
		{[]string{"reload", "extra"}, 1, `unexpected argument "extra"`},
		{[]string{"rekey", "-c", broken, "b"}, 1, broken + ":3: TOML syntax"},
		{[]string{"disconnect", "-i", "st0"}, 1, "missing PEER"},
		{[]string{"state", "save", "--bogus"}, 1, "flag provided but not defined"},
		{[]string{"state"}, 1, "stunnel state: missing subcommand (save); usage: stunnel state save"},
		{[]string{"state", "load"}, 1, `stunnel state: unknown subcommand "load"; usage: stunnel state save`},
		{[]string{"reload"}, 1, "no tunnel running"},
		{[]string{"tickets", "list", "-c", broken}, 2, broken + ":3: TOML syntax"},
	} {
		stdout, stderr, code := runStunnel(t, "", c.args...)
		if code != c.code || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("stunnel %v: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", c.args, code, stdout, stderr, c.code, c.want)
		}
	}
}

// interfaceName reads only the name: the rest of the file may be broken
// (being edited) without stopping `show -c` or `rekey -c`.
func TestInterfaceNameReadsOnlyTheName(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if n, err := interfaceName("show", write("[interface]\nname = \"st3\"\nprivate_key_file = \"/nonexistent\"\nbogus = 1\n[[peer]]\nid = 5\n")); err != nil || n != "st3" {
		t.Errorf("broken rest: %q %v", n, err)
	}
	for text, want := range map[string]string{
		"[interface]\nname = \n":              "c.toml:2: TOML syntax",
		"[interface]\npeer_id = \"a\"\n":      "[interface] has no name",
		"[interface]\nname = 7\n":             "[interface] has no name",
		"[interface]\nname = \"../../etc\"\n": `name "../../etc" is not a valid interface name`,
	} {
		if _, err := interfaceName("show", write(text)); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "stunnel show: ") {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	if _, err := interfaceName("show", filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "cannot read config: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
	// A key pasted as the name is refused without being shown, as check
	// refuses it.
	key := strings.TrimSpace(mustGenkey(t))
	if _, err := interfaceName("show", write("[interface]\nname = \""+key+"\"\n")); err == nil ||
		!strings.Contains(err.Error(), "not a valid interface name") || strings.Contains(err.Error(), key[:20]) {
		t.Errorf("a key as the name: %v; want refused without the key", err)
	}
}

// `stunnel reload -c FILE` says which file the daemon read: its own, the
// one `up -c` was given. -c only picks the tunnel by its [interface] name,
// so a FILE that is another file (an edited copy) was not read, and the
// CLI says so on stderr; the reload did succeed, so it exits 0.
func TestReloadNamesTheFileRead(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	own := writeConfig(t, "st0") // the daemon's
	data, err := os.ReadFile(own)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cp, link := filepath.Join(dir, "copy.toml"), filepath.Join(dir, "link.toml")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(own, link); err != nil {
		t.Fatal(err)
	}
	var read atomic.Pointer[string] // what the daemon says it read; "" as an older daemon
	listenControl(t, "st0", control.Handlers{
		Status: func() ([]byte, error) { return []byte(`{}`), nil },
		Reload: func() (string, error) { return *read.Load(), nil },
	})
	for _, c := range []struct {
		daemon string   // the file the daemon read
		args   []string // to stunnel reload
		note   bool     // a line on stderr: -c was not that file
	}{
		{own, []string{"-c", own}, false},
		{own, []string{"-c", link}, false}, // another name for the same file
		{own, []string{"-i", "st0"}, false},
		{own, nil, false},
		{own, []string{"-c", cp}, true},
		// Not there to look at from here (another mount namespace): the paths differ.
		{"/nonexistent/st.toml", []string{"-c", own}, true},
		// An older daemon names no file: the old line, and nothing to compare.
		{"", []string{"-c", cp}, false},
	} {
		read.Store(&c.daemon)
		code, out, errs := admin("reload", "reload", "", c.args...)
		wantOut := "configuration reloaded from " + c.daemon + "\n"
		if c.daemon == "" {
			wantOut = "configuration reloaded\n"
		}
		wantErr := ""
		if c.note {
			given := c.args[1]
			wantErr = "stunnel reload: note: the tunnel re-read its own config " + c.daemon + ", not " + given +
				" (-c only picks which tunnel to reload); to apply " + given + ", put its changes in " + c.daemon + " and reload again\n"
		}
		if code != exitOK || out != wantOut || errs != wantErr {
			t.Errorf("daemon read %q, reload %v: exit %d, stdout %q, stderr %q; want exit 0, stdout %q, stderr %q", c.daemon, c.args, code, out, errs, wantOut, wantErr)
		}
	}
}

// The daemon's reload handler answers with the file it reads, made
// absolute: the client may run in another directory.
func TestReloadHandlerGivesAbsolutePath(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan chan error, 1)
	stopping := make(chan struct{})
	running := newRunningConfig(&conf.Config{Path: "st0.toml"})
	h := controlHandlers(nil, nil, nil, reloads, stopping, running, nil, nil, slog.New(slog.DiscardHandler))
	go func() { reply := <-reloads; reply <- nil }()
	if file, err := h.Reload(); err != nil || file != filepath.Join(wd, "st0.toml") {
		t.Errorf("reload answered %q, %v; want %q", file, err, filepath.Join(wd, "st0.toml"))
	}
	go func() { reply := <-reloads; reply <- errors.New("reload failed, running configuration kept: x") }()
	if file, err := h.Reload(); err == nil || file != "" {
		t.Errorf("failed reload answered %q, %v; want no file and the error", file, err)
	}
}

// The daemon's refusals name the command, and the CLI's line names it
// already: "stunnel rekey: rekey needs a peer ID" read it twice. The line
// names it once; the audit log keeps the daemon's whole message.
func TestDaemonRefusalNamesTheCommandOnce(t *testing.T) {
	t.Setenv(control.RunDirEnv, t.TempDir())
	var audit lockedBuffer
	s, err := control.Listen(control.Config{Name: "st0", Audit: slog.New(slog.NewTextHandler(&audit, nil)), Handlers: control.Handlers{
		Status: func() ([]byte, error) { return []byte(`{}`), nil },
		Reload: func() (string, error) {
			return "", errors.New("reload failed, running configuration kept: x.toml:3: bad")
		},
		Rekey: func(p string) error { return control.NotFound(errors.New(`peer "` + p + `": no such peer`)) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, c := range []struct {
		command, argName string
		args             []string
		stderr, audit    string
	}{
		// The brief's case: an empty peer ID reaches the daemon, which refuses it.
		{"rekey", "PEER", []string{""}, "needs a peer ID", `command=rekey arg="" outcome="refused: rekey needs a peer ID"`},
		{"rekey", "PEER", []string{"a\x01b"}, `argument holds the unprintable '\x01'`, `outcome="refused: rekey: argument holds the unprintable '\\x01'"`},
		{"reload", "", nil, "failed, running configuration kept: x.toml:3: bad", `command=reload arg="" outcome="failed: reload failed, running configuration kept: x.toml:3: bad"`},
		{"state save", "", nil, "not available in this build yet", `command="state save" arg="" outcome="failed: state save: not available in this build yet"`},
		// Not starting with the command: as the daemon said it.
		{"rekey", "PEER", []string{"rekey"}, `peer "rekey": no such peer`, `outcome="failed: peer \"rekey\": no such peer"`},
	} {
		code, out, errs := admin(c.command, c.command, c.argName, c.args...)
		if want := "stunnel " + c.command + ": " + c.stderr + "\n"; code != exitRuntime || out != "" || errs != want {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.command, c.args, code, out, errs, want)
		}
		if !strings.Contains(audit.String(), c.audit) {
			t.Errorf("%s %q: audit log lacks %s:\n%s", c.command, c.args, c.audit, audit.String())
		}
	}
}
