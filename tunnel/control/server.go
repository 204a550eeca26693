package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"stunnel/internal/keytext"
	"stunnel/internal/panicsite"
)

// Handlers are what the daemon does for each command. A nil handler answers
// 501 "not available in this build yet". Returned JSON is sent as it is; an
// error becomes {"error": "..."}: ErrNotFound (wrapped) gives 404,
// ErrNotAvailable 501, anything else 500.
type Handlers struct {
	Status  func() ([]byte, error) // read: tunnel.Status as JSON
	Metrics http.Handler           // read: Prometheus text format

	Reload     func() (file string, err error) // operate: the SIGHUP path; file is the config it read, absolute
	Rekey      func(peer string) error         // operate
	Disconnect func(peer string) error         // operate
	StateSave  func() error                    // operate

	TicketsList   func() ([]byte, error)           // officer
	TicketsAdd    func(arg string) ([]byte, error) // officer
	TicketsRetire func(id string) ([]byte, error)  // officer
}

// Config is what Listen needs.
type Config struct {
	Name     string // interface name: names the sockets
	Groups   Groups // which unix group holds which role
	Handlers Handlers
	// Audit receives one line per audited request; nil logs nowhere.
	Audit *slog.Logger
	// Log receives the warning, at most one line per 10 s, that
	// connections are refused for the connection limit (limit.go), and an
	// error line for each handler that panicked; nil logs nowhere.
	Log *slog.Logger

	// credsOf reads a caller's credentials; nil is peerCreds. Tests set
	// it (and now) to be callers they cannot be.
	credsOf func(*net.UnixConn) (Creds, error)
	now     func() time.Time // nil is time.Now
}

// Server serves the control sockets of one tunnel.
type Server struct {
	path   string // the main socket
	groups Groups
	h      Handlers
	audit  *slog.Logger
	log    *slog.Logger // never nil: Config.Log or a discarding one
	http   *http.Server
	lim    *limiter // the connection limit, shared by all the sockets

	socks []sock // bound in Listen, read-only after
	wg    sync.WaitGroup

	// handlers counts the ServeHTTP calls under way. Close waits for them
	// after it cut off what its bound left running: net/http closes those
	// connections but does not wait for their handlers, which would then
	// act on a daemon that has gone on stopping (its state saved, its keys
	// zeroed). A call is counted only while handlersDone is false (both
	// under hmu), so no count starts once Close waits.
	hmu          sync.Mutex
	handlersDone bool
	handlers     sync.WaitGroup

	closeOnce sync.Once
}

type sock struct {
	path string
	ln   *ctlListener
	ino  uint64 // to remove the file only if it is still ours
}

type credsKey struct{}

// credsError is in a connection's context in place of its Creds when the
// kernel would not say who the caller is: each request on it is refused,
// with the reason, and audited.
type credsError struct{ err error }

// shutdownWait bounds how long Close lets running requests finish before it
// cuts their connections off (a variable for tests only).
var shutdownWait = 5 * time.Second

// Listen creates the control sockets for cfg.Name and starts serving. A
// stale socket file (nobody listening) is replaced; a live one means another
// daemon runs for that name, and Listen fails.
func Listen(cfg Config) (*Server, error) {
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Handlers.Status == nil {
		return nil, errors.New("control socket: nil status handler")
	}
	if err := prepareDir(Dir()); err != nil {
		return nil, err
	}
	s := &Server{path: SocketPath(cfg.Name), groups: cfg.Groups, h: cfg.Handlers, audit: cfg.Audit}
	if s.audit == nil {
		s.audit = slog.New(slog.DiscardHandler)
	}
	if s.log = cfg.Log; s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.lim = &limiter{groups: cfg.Groups, credsOf: cfg.credsOf, log: cfg.Log, now: cfg.now, open: map[*ctlConn]struct{}{},
		byUser: map[shareKey]int{}}
	if s.lim.credsOf == nil {
		s.lim.credsOf = peerCreds
	}
	if s.lim.now == nil {
		s.lim.now = time.Now
	}
	if s.lim.log == nil {
		s.lim.log = slog.New(slog.DiscardHandler)
	}
	s.lim.unserved = s.auditUnserved
	for _, r := range roles {
		g := cfg.Groups.of(r)
		if r != RoleRead && !g.IsSet() {
			continue // root uses the main socket
		}
		path := roleSocketPath(s.path, r)
		err := clearStale(path, cfg.Name)
		var ln *net.UnixListener
		var ino uint64
		if err == nil {
			ln, ino, err = listenSocket(path, cfg.Name, g)
		}
		if err != nil {
			for _, k := range s.socks {
				k.ln.Close()
				removeIfOurs(k.path, k.ino)
			}
			return nil, err
		}
		s.socks = append(s.socks, sock{path, &ctlListener{UnixListener: ln, lim: s.lim}, ino})
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: Timeout,
		ReadTimeout:       Timeout,
		WriteTimeout:      ReplyTimeout, // a reload or a big status may take a while
		IdleTimeout:       Timeout,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			cc, ok := c.(*ctlConn)
			if !ok {
				return ctx
			}
			ctx = context.WithValue(ctx, connKey{}, cc)
			if cc.credsErr != nil {
				return context.WithValue(ctx, credsKey{}, credsError{cc.credsErr})
			}
			return context.WithValue(ctx, credsKey{}, cc.creds)
		},
	}
	// One request per connection (our client sends one and says close):
	// with keep-alive, a client sending a request now and then would hold
	// its slot of the connection limit forever.
	s.http.SetKeepAlivesEnabled(false)
	for _, k := range s.socks {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.http.Serve(k.ln) // returns ErrServerClosed on Close
		}()
	}
	return s, nil
}

// Path returns the main socket's file name.
func (s *Server) Path() string { return s.path }

// Refused is how many connections the connection limit has refused since
// Listen, because the caller's tier was full (see MaxConns) and because its
// uid held UserShare; safe to call at any time, for the metrics.
func (s *Server) Refused() (tierLimit, uidShare uint64) {
	_, tierLimit, uidShare = s.lim.count()
	return tierLimit, uidShare
}

// Paths returns every socket's file name, the main one first.
func (s *Server) Paths() []string {
	out := make([]string, len(s.socks))
	for i, k := range s.socks {
		out[i] = k.path
	}
	return out
}

// ServeHTTP answers one request: parse, check the caller's role, run the
// handler, audit. A panic in a handler becomes a 500 reply, not a crash,
// and is logged whatever the command: an audit line (status and metrics
// have none otherwise) and an error line saying where it panicked.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.handlerStarts() {
		// Close has cut the connections off and waits for the handlers:
		// nothing more runs. Aborted unanswered and not marked dispatched,
		// so the connection audits it as not served, the daemon stopping.
		panic(http.ErrAbortHandler)
	}
	defer s.handlers.Done()
	if cc, ok := r.Context().Value(connKey{}).(*ctlConn); ok {
		cc.dispatched.Store(true) // audited here, not as unserved
	}
	who := r.Context().Value(credsKey{})
	cr, haveCreds := who.(Creds)
	var cmd Command
	var arg string
	outcome := "ok"
	audit := false
	defer func() {
		if p := recover(); p != nil {
			if cmd.Name == "" {
				cmd.Name = "unknown"
			}
			audit, outcome = true, fmt.Sprintf("failed: internal error: %v", p)
			s.log.Error("control request panicked", "command", cmd.Name, "panic", fmt.Sprint(p), "at", panicsite.Of())
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("internal error: %v", p))
		}
		if audit {
			if cmd.Secret && arg != "" {
				arg = "(given, not logged: key material)"
			}
			s.auditLine(cr, haveCreds, cmd.Name, arg, outcome)
		}
	}()
	if !haveCreds {
		msg := "permission denied: cannot read the caller's credentials"
		if ce, ok := who.(credsError); ok {
			msg += " (" + ce.err.Error() + ")"
		}
		cmd.Name = "unknown"
		if c, ok := commandByPath(r.URL.Path); ok {
			cmd.Name = c.Name
		}
		audit, outcome = true, "refused: "+msg
		writeError(w, http.StatusForbidden, msg)
		return
	}
	cmd, arg, err := parseRequest(r.Method, r.URL.Path, r.Body)
	if err != nil {
		var re *requestError
		status := http.StatusBadRequest
		if errors.As(err, &re) {
			status = re.status
		}
		if cmd.Name == "" {
			cmd.Name = "unknown"
			arg = r.URL.Path
			if len(arg) > 64 {
				arg = arg[:64] + "..."
			}
		}
		audit, outcome = true, "refused: "+err.Error()
		writeError(w, status, err.Error())
		return
	}
	audit = cmd.Audit
	if s.groups.Grants(cr)&cmd.Role == 0 {
		msg := s.groups.denied(cmd.Role)
		audit, outcome = true, "refused: "+msg
		writeError(w, http.StatusForbidden, msg)
		return
	}
	if cmd.Name == "metrics" {
		if s.h.Metrics == nil {
			outcome = "failed: " + ErrNotAvailable.Error()
			writeError(w, http.StatusNotImplemented, "metrics: "+ErrNotAvailable.Error())
			return
		}
		s.h.Metrics.ServeHTTP(w, r)
		return
	}
	out, err := s.run(cmd, arg)
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrNotAvailable):
			status = http.StatusNotImplemented
		case errors.Is(err, ErrNotFound):
			status = http.StatusNotFound
		}
		outcome = "failed: " + err.Error()
		writeError(w, status, err.Error())
		return
	}
	if out == nil {
		out = []byte(`{"ok":true}`)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(out, '\n'))
}

// handlerStarts counts a ServeHTTP call in handlers, unless Close already
// waits for them.
func (s *Server) handlerStarts() bool {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.handlersDone {
		return false
	}
	s.handlers.Add(1)
	return true
}

// auditLine writes one audit line: who asked, what, and how it ended. What
// looks like a key is hidden in the argument and the outcome (which may
// quote it): `stunnel rekey KEY`, a pre-shared key pasted where the peer
// ID belongs, must not put it in the journal. The CLI hides it in its own
// messages, but sends the argument.
func (s *Server) auditLine(cr Creds, haveCreds bool, command, arg, outcome string) {
	arg, outcome = keytext.Hide(arg), keytext.Hide(outcome)
	caller := []any{"uid", cr.UID, "gid", cr.GID, "pid", cr.PID}
	if !haveCreds {
		// The zero Creds would read as uid 0, root.
		caller = []any{"uid", "unknown", "gid", "unknown", "pid", "unknown"}
	}
	s.audit.Info("audit", append(caller, "command", command, "arg", arg, "outcome", outcome)...)
}

// run calls cmd's handler; a nil one is ErrNotAvailable.
func (s *Server) run(cmd Command, arg string) ([]byte, error) {
	na := fmt.Errorf("%s: %w", cmd.Name, ErrNotAvailable)
	noReply := func(f func() error) ([]byte, error) {
		if f == nil {
			return nil, na
		}
		return nil, f()
	}
	withArg := func(f func(string) error) ([]byte, error) {
		if f == nil {
			return nil, na
		}
		return nil, f(arg)
	}
	reply := func(f func() ([]byte, error)) ([]byte, error) {
		if f == nil {
			return nil, na
		}
		return f()
	}
	replyArg := func(f func(string) ([]byte, error)) ([]byte, error) {
		if f == nil {
			return nil, na
		}
		return f(arg)
	}
	switch cmd.Name {
	case "status":
		return reply(s.h.Status)
	case "reload":
		if s.h.Reload == nil {
			return nil, na
		}
		file, err := s.h.Reload()
		if err != nil {
			return nil, err
		}
		return json.Marshal(ReloadReply{OK: true, File: file})
	case "rekey":
		return withArg(s.h.Rekey)
	case "disconnect":
		return withArg(s.h.Disconnect)
	case "state save":
		return noReply(s.h.StateSave)
	case "tickets list":
		return reply(s.h.TicketsList)
	case "tickets add":
		return replyArg(s.h.TicketsAdd)
	case "tickets retire":
		return replyArg(s.h.TicketsRetire)
	}
	return nil, na
}

// writeError replies msg, with what looks like a key hidden: handlers
// quote the argument they were given ("peer %q: no such peer"), which may
// be a key pasted where a peer ID or key name belongs.
func writeError(w http.ResponseWriter, status int, msg string) {
	msg = keytext.Hide(strings.ReplaceAll(msg, "\n", "; ")) // errors are one line
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Close stops accepting, lets running requests finish (up to a bound),
// closes at once the connections on which nothing was sent, waits for
// every goroutine of the server and removes the socket files. Past the
// bound it cuts the remaining connections off and still waits for their
// handlers to return: when it returns, no handler runs. It is safe to
// call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		for _, k := range s.socks {
			_ = k.ln.Close() // no new connections; one accepted meanwhile finds the limiter shut
		}
		s.lim.shut()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close() // cut off what did not finish in time
		}
		s.wg.Wait()
		s.hmu.Lock()
		s.handlersDone = true
		s.hmu.Unlock()
		s.handlers.Wait() // those cut off above are still running
		for _, k := range s.socks {
			removeIfOurs(k.path, k.ino)
		}
	})
	return nil
}
