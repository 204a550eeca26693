package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"stunnel/internal/roottest"
)

var testGroups = Groups{
	Read:    Group{Name: "st-read", GID: 5001},
	Operate: Group{Name: "st-ops", GID: 5002},
	Officer: Group{Name: "st-keys", GID: 5003},
}

func allHandlers() Handlers {
	ok := func() ([]byte, error) { return []byte(`{"done":true}`), nil }
	return Handlers{
		Status:        ok,
		Metrics:       http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("m 1\n")) }),
		Reload:        func() (string, error) { return "/etc/stunnel/st0.toml", nil },
		Rekey:         func(string) error { return nil },
		Disconnect:    func(string) error { return nil },
		StateSave:     func() error { return nil },
		TicketsList:   ok,
		TicketsAdd:    func(string) ([]byte, error) { return ok() },
		TicketsRetire: func(string) ([]byte, error) { return ok() },
	}
}

// serve runs one request through the server as the caller cr, the way a
// connection's context carries it.
func serveAs(s *Server, cr *Creds, cmd Command, arg string) *httptest.ResponseRecorder {
	var body *bytes.Reader
	if cmd.Method == http.MethodPost {
		b, _ := json.Marshal(map[string]string{"arg": arg})
		body = bytes.NewReader(b)
	} else {
		body = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(cmd.Method, cmd.Path, body)
	if cr != nil {
		r = r.WithContext(context.WithValue(r.Context(), credsKey{}, *cr))
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// TestRoleMatrix: for every command and every kind of caller, the right
// roles succeed, the others are refused with the role and group named, and
// every state-changing request and every refusal leaves one audit line with
// uid, gid, pid, command, argument and outcome.
func TestRoleMatrix(t *testing.T) {
	var audit bytes.Buffer
	s := &Server{groups: testGroups, h: allHandlers(), audit: slog.New(slog.NewTextHandler(&audit, nil))}
	callers := map[string]Creds{
		"root":     {PID: 1, UID: 0, GID: 0},
		"reader":   {PID: 11, UID: 1001, GID: 5001},
		"operator": {PID: 12, UID: 1002, GID: 100, Groups: []uint32{5002}},
		"officer":  {PID: 13, UID: 1003, GID: 100, Groups: []uint32{7, 5003}},
		"both":     {PID: 14, UID: 1004, GID: 100, Groups: []uint32{5001, 5003}},
		"nobody":   {PID: 15, UID: 1005, GID: 100, Groups: []uint32{7, 8}},
	}
	allowed := map[string][]string{
		"status": {"root", "reader", "operator", "both"}, "metrics": {"root", "reader", "operator", "both"},
		"reload": {"root", "operator"}, "rekey": {"root", "operator"}, "disconnect": {"root", "operator"},
		"state save":   {"root", "operator"},
		"tickets list": {"root", "officer", "both"}, "tickets add": {"root", "officer", "both"},
		"tickets retire": {"root", "officer", "both"},
	}
	denied := map[Role]string{
		RoleRead:    "permission denied: needs the read role (group st-read or st-ops)",
		RoleOperate: "permission denied: needs the operate role (group st-ops)",
		RoleOfficer: "permission denied: needs the officer role (group st-keys)",
	}
	wantLines := 0
	for _, cmd := range Commands {
		for who, cr := range callers {
			arg := ""
			if cmd.Arg == argRequired {
				arg = "site-b"
			}
			audit.Reset()
			w := serveAs(s, &cr, cmd, arg)
			ok := strings.Contains(strings.Join(allowed[cmd.Name], ","), who)
			switch {
			case ok && w.Code != 200:
				t.Errorf("%s by %s: %d %s, want allowed", cmd.Name, who, w.Code, w.Body)
			case !ok && (w.Code != 403 || !strings.Contains(w.Body.String(), denied[cmd.Role])):
				t.Errorf("%s by %s: %d %s, want 403 %q", cmd.Name, who, w.Code, w.Body, denied[cmd.Role])
			}
			line := audit.String()
			if !cmd.Audit && ok {
				if line != "" {
					t.Errorf("%s by %s: a read was audited: %s", cmd.Name, who, line)
				}
				continue
			}
			wantLines++
			outcome := `outcome=ok`
			if !ok {
				outcome = `outcome="refused: ` + denied[cmd.Role]
			}
			for _, want := range []string{"msg=audit", fmt.Sprintf("uid=%d gid=%d pid=%d", cr.UID, cr.GID, cr.PID),
				"command=" + slogValue(cmd.Name), "arg=" + slogValue(arg), outcome} {
				if strings.Count(line, "\n") != 1 || !strings.Contains(line, want) {
					t.Errorf("%s by %s: audit %q lacks %q", cmd.Name, who, line, want)
				}
			}
		}
	}
	// An argument that may be key material never reaches the log.
	audit.Reset()
	add, _ := CommandByName("tickets add")
	serveAs(s, &Creds{UID: 0}, add, "SECRETKEYBYTES")
	if line := audit.String(); strings.Contains(line, "SECRETKEYBYTES") || !strings.Contains(line, "not logged: key material") {
		t.Errorf("tickets add audit: %s", line)
	}
	if wantLines < 30 {
		t.Errorf("only %d audited cases", wantLines)
	}
	// No credentials at all (not a unix socket): refused.
	if w := serveAs(s, nil, Commands[0], ""); w.Code != 403 {
		t.Errorf("no credentials: %d", w.Code)
	}
}

func TestDeniedMessages(t *testing.T) {
	for _, c := range []struct {
		g    Groups
		need Role
		want string
	}{
		{Groups{}, RoleOperate, "permission denied: needs the operate role (root only: [control] operate_group is not set)"},
		{Groups{Read: Group{"r", 1}}, RoleRead, "permission denied: needs the read role (group r)"},
		{Groups{Operate: Group{"o", 2}}, RoleRead, "permission denied: needs the read role (group o)"},
		{Groups{Officer: Group{"k", 3}}, RoleOfficer, "permission denied: needs the officer role (group k)"},
	} {
		if got := c.g.denied(c.need); got != c.want {
			t.Errorf("denied(%v) = %q, want %q", c.need, got, c.want)
		}
	}
	if got := testGroups.Grants(Creds{UID: 9, GID: 5002}); got != RoleOperate|RoleRead {
		t.Errorf("operate group grants %v", got)
	}
	if got := testGroups.Grants(Creds{UID: 9, GID: 5003}); got != RoleOfficer {
		t.Errorf("officer group grants %v (an officer does not read counters)", got)
	}
	if got := (Groups{}).Grants(Creds{UID: 9, GID: 0, Groups: []uint32{0}}); got != 0 {
		t.Errorf("unset groups granted %v to gid 0", got)
	}
}

// TestRoleSocketsModes (root: chown to any group): each role with a group
// gets its own socket 0660 root:group; the main socket is the read group's.
func TestRoleSocketsModes(t *testing.T) {
	roottest.Require(t, "chown of the control sockets to other groups")
	noLeaks(t)
	dir := runDir(t)
	g := Groups{Operate: Group{"st-ops", 5002}, Officer: Group{"st-keys", 5003}}
	s, err := Listen(Config{Name: "st0", Groups: g, Handlers: allHandlers()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	assertSocket(t, SocketPath("st0"), 0o600, uint32(os.Getegid())) // read_group unset: root only
	assertSocket(t, dir+"/st0:operate.sock", 0o660, 5002)
	assertSocket(t, dir+"/st0:officer.sock", 0o660, 5003)
	if got, _ := Sockets(); len(got) != 1 || got[0] != SocketPath("st0") {
		t.Errorf("Sockets() = %v: role sockets must not be listed as tunnels", got)
	}
	// Root reaches every command through any socket.
	for _, p := range s.Paths() {
		if out, err := Query(p, "tickets list", ""); err != nil || !strings.Contains(string(out), "done") {
			t.Errorf("through %s: %q %v", p, out, err)
		}
	}
	s.Close()
	for _, p := range []string{SocketPath("st0"), dir + "/st0:operate.sock", dir + "/st0:officer.sock"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after Close: %v", p, err)
		}
	}
	// A stale role socket of a crashed daemon is replaced too.
	deadSocket(t, dir+"/st0:operate.sock")
	s2, err := Listen(Config{Name: "st0", Groups: g, Handlers: allHandlers()})
	if err != nil {
		t.Fatalf("over a stale role socket: %v", err)
	}
	s2.Close()
	// A socket that is not ours is not removed.
	deadSocket(t, dir+"/st0:officer.sock")
	os.Lchown(dir+"/st0:officer.sock", 4242, 4242)
	if _, err := Listen(Config{Name: "st0", Groups: g, Handlers: allHandlers()}); err == nil || !strings.Contains(err.Error(), "belongs to uid 4242, not to us") {
		t.Errorf("over a foreign socket: %v", err)
	}
	if _, err := os.Lstat(SocketPath("st0")); !os.IsNotExist(err) {
		t.Errorf("a failed Listen left the main socket: %v", err)
	}
}

// slogValue is how slog's text handler writes a string value.
func slogValue(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// TestNoCredentialsAudited: a request whose caller the kernel could not name
// is refused, says why, and leaves its audit line like every refusal; the
// line does not claim uid 0 (root) for a caller nobody identified.
func TestNoCredentialsAudited(t *testing.T) {
	var audit bytes.Buffer
	s := &Server{groups: testGroups, h: allHandlers(), audit: slog.New(slog.NewTextHandler(&audit, nil))}
	reload, _ := CommandByName("reload")
	r := httptest.NewRequest(reload.Method, reload.Path, strings.NewReader(`{"arg":""}`))
	r = r.WithContext(context.WithValue(r.Context(), credsKey{}, credsError{errors.New("SO_PEERGROUPS: protocol not available")}))
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	want := "permission denied: cannot read the caller's credentials (SO_PEERGROUPS: protocol not available)"
	if w.Code != 403 || !strings.Contains(w.Body.String(), want) {
		t.Errorf("reply %d %s, want 403 %q", w.Code, w.Body, want)
	}
	line := audit.String()
	for _, want := range []string{"msg=audit", "uid=unknown gid=unknown pid=unknown", "command=reload", `outcome="refused: ` + want} {
		if strings.Count(line, "\n") != 1 || !strings.Contains(line, want) {
			t.Errorf("audit %q lacks %q", line, want)
		}
	}
	// Without even an error (not a unix socket at all): still refused
	// and audited.
	audit.Reset()
	if w := serveAs(s, nil, reload, ""); w.Code != 403 || !strings.Contains(audit.String(), "uid=unknown") {
		t.Errorf("no credentials: %d, audit %q", w.Code, audit.String())
	}
}
