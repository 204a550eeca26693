package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode"
	"unicode/utf8"
)

// argKind says whether a command takes an argument.
type argKind uint8

const (
	argNone     argKind = iota
	argRequired         // e.g. the peer ID of rekey
	argOptional
)

// Command is one request the control socket understands.
type Command struct {
	Name   string // as the CLI and the audit log spell it: "rekey", "tickets add"
	Method string
	Path   string
	Role   Role    // the role that may run it
	Arg    argKind // whether it takes an argument
	What   string  // what the argument is, for messages: "peer ID"
	// Audit: logged allowed or refused. Every command that changes state
	// or touches key material is; reads of status and metrics are logged
	// only when refused (a scraper every 15 s would drown the log).
	Audit bool
	// Secret: the argument may be key material; the audit log says only
	// whether there was one.
	Secret bool
}

// Commands is every request, fixed for the protocol's version 1.
var Commands = []Command{
	{Name: "status", Method: http.MethodGet, Path: "/v1/status", Role: RoleRead},
	{Name: "metrics", Method: http.MethodGet, Path: "/v1/metrics", Role: RoleRead},
	{Name: "reload", Method: http.MethodPost, Path: "/v1/reload", Role: RoleOperate, Audit: true},
	{Name: "rekey", Method: http.MethodPost, Path: "/v1/rekey", Role: RoleOperate, Arg: argRequired, What: "peer ID", Audit: true},
	{Name: "disconnect", Method: http.MethodPost, Path: "/v1/disconnect", Role: RoleOperate, Arg: argRequired, What: "peer ID", Audit: true},
	{Name: "state save", Method: http.MethodPost, Path: "/v1/state/save", Role: RoleOperate, Audit: true},
	{Name: "tickets list", Method: http.MethodGet, Path: "/v1/tickets", Role: RoleOfficer, Audit: true},
	// tickets add takes no key (the daemon refuses one: cmd/stunnel/sessions.go);
	// the argument stays optional and secret so an older client's key is
	// answered with that refusal and never reaches the audit log.
	{Name: "tickets add", Method: http.MethodPost, Path: "/v1/tickets/add", Role: RoleOfficer, Arg: argOptional, What: "ticket key", Audit: true, Secret: true},
	{Name: "tickets retire", Method: http.MethodPost, Path: "/v1/tickets/retire", Role: RoleOfficer, Arg: argRequired, What: "ticket key ID", Audit: true},
}

// CommandByName finds a command by its CLI name.
func CommandByName(name string) (Command, bool) {
	for _, c := range Commands {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// commandByPath finds a command by its request path.
func commandByPath(path string) (Command, bool) {
	for _, c := range Commands {
		if c.Path == path {
			return c, true
		}
	}
	return Command{}, false
}

// body is the JSON a POST carries. GET requests carry none.
type body struct {
	Arg string `json:"arg"`
}

// ReloadReply is what a reload answers. File is the config file the daemon
// read, as an absolute path: its own, the one `up -c` was given, not the
// file a client may have named to find the tunnel (the CLI's -c only picks
// the tunnel by its [interface] name). A daemon older than File answers
// {"ok":true}, and the client then cannot say which file was read.
type ReloadReply struct {
	OK   bool   `json:"ok"`
	File string `json:"file,omitempty"`
}

// requestError is a request the server refuses before any role check: it
// is malformed, whoever sent it.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// parseRequest maps an HTTP request to a command and its argument. It reads
// at most MaxRequest bytes of body; everything in it is untrusted.
func parseRequest(method, path string, r io.Reader) (Command, string, error) {
	cmd, found := commandByPath(path)
	if !found {
		return cmd, "", &requestError{http.StatusNotFound, fmt.Sprintf("unknown request %s", quoteShort(path))}
	}
	if method != cmd.Method {
		return cmd, "", &requestError{http.StatusMethodNotAllowed, fmt.Sprintf("%s needs method %s, not %s", cmd.Name, cmd.Method, quoteShort(method))}
	}
	var data []byte
	if r != nil {
		var err error
		data, err = io.ReadAll(io.LimitReader(r, MaxRequest+1))
		if err != nil {
			return cmd, "", badRequest("reading request: %v", err)
		}
	}
	if len(data) > MaxRequest {
		return cmd, "", badRequest("request longer than %d bytes", MaxRequest)
	}
	var b body
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			if cmd.Secret { // the decoder's message can quote a character of the key
				return cmd, "", badRequest("malformed request body (not shown: it may hold key material)")
			}
			return cmd, "", badRequest("malformed request body: %v", err)
		}
		if dec.More() {
			return cmd, "", badRequest("malformed request body: more than one JSON value")
		}
	}
	if err := checkArg(cmd, b.Arg); err != nil {
		return cmd, "", err
	}
	return cmd, b.Arg, nil
}

// checkArg applies the command's argument rule and keeps arguments
// printable, so the audit log and messages show them safely.
func checkArg(cmd Command, arg string) error {
	switch {
	case cmd.Arg == argNone && arg != "":
		return badRequest("%s takes no argument", cmd.Name)
	case cmd.Arg == argRequired && arg == "":
		return badRequest("%s needs a %s", cmd.Name, cmd.What)
	case len(arg) > MaxArg:
		return badRequest("%s: argument longer than %d bytes", cmd.Name, MaxArg)
	case !utf8.ValidString(arg):
		return badRequest("%s: argument is not UTF-8", cmd.Name)
	}
	for _, r := range arg {
		if !unicode.IsPrint(r) {
			if cmd.Secret { // key material: not even one character of it
				return badRequest("%s: argument holds an unprintable character", cmd.Name)
			}
			return badRequest("%s: argument holds the unprintable %q", cmd.Name, r)
		}
	}
	return nil
}

// quoteShort quotes untrusted text for a message, cut to 40 bytes.
func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// Sentinel errors a handler returns to pick the reply's status.
var (
	// ErrNotFound: the argument names nothing (no such peer): 404.
	ErrNotFound = errors.New("not found")
	// ErrNotAvailable: this build cannot do the command yet: 501.
	ErrNotAvailable = errors.New("not available in this build yet")
)

// NotFound marks err as ErrNotFound (a 404) and keeps its message as it is.
func NotFound(err error) error { return notFound{err} }

type notFound struct{ error }

func (notFound) Is(target error) bool { return target == ErrNotFound }
func (e notFound) Unwrap() error      { return e.error }
