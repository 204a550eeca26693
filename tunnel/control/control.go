// Package control is the daemon's control interface: HTTP with JSON replies
// over unix sockets, one set per tunnel, where `stunnel show`, `rekey`,
// `reload`... talk to a running daemon. The caller's role (read, operate,
// officer) comes from its unix credentials (SO_PEERCRED, SO_PEERGROUPS),
// never from the request, and every request is checked against it.
//
// The package knows nothing of the tunnel: what a command does comes from
// plain handler funcs the daemon supplies (Handlers).
package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// replyTimeout and maxReply are the bounds Query applies: ReplyTimeout and
// MaxReply. Only tests lower them, to see the refusals without a 30 s wait
// or a 64 MiB reply; nothing else writes them.
var (
	replyTimeout = ReplyTimeout
	maxReply     = MaxReply
)

const (
	// DefaultDir is where sockets live unless $STUNNEL_RUN_DIR says otherwise.
	DefaultDir = "/run/stunnel"
	// RunDirEnv names the environment variable that moves the socket
	// directory (for tests and unprivileged runs).
	RunDirEnv = "STUNNEL_RUN_DIR"
	// Timeout bounds reading a request (headers and body) on the server and
	// connecting on the client: a caller that connects and says nothing
	// cannot hold a server goroutine longer than this.
	Timeout = 2 * time.Second
	// ReplyTimeout bounds a whole exchange on the client, reads included:
	// reload re-reads the config and key files, and the status or metrics
	// of 10,000 peers take the daemon a second or two to make.
	ReplyTimeout = 30 * time.Second
	// MaxRequest bounds a request body: {"arg": "..."}.
	MaxRequest = 1024
	// MaxArg bounds a command's argument (a peer ID, a ticket key ID).
	MaxArg = 255
	// MaxReply bounds what the client accepts: the metrics of 10,000 peers
	// with 64-byte IDs (about 25 MB) fit; a runaway server does not exhaust
	// the client's memory.
	MaxReply = 64 << 20
	// sockSuffix ends every socket's file name.
	sockSuffix = ".sock"
	// roleSep separates the interface name from the role in a role
	// socket's file name ("st0:operate.sock"). Linux interface names cannot
	// hold ':', so no tunnel's main socket can collide with a role socket.
	roleSep = ":"
)

// ErrNotRunning is wrapped by the client's error when nothing listens on the
// socket (no file, or a stale file nobody accepts on).
var ErrNotRunning = errors.New("no tunnel running")

// Dir is where sockets live: $STUNNEL_RUN_DIR if set, else /run/stunnel.
func Dir() string {
	if d := os.Getenv(RunDirEnv); d != "" {
		return d
	}
	return DefaultDir
}

// SocketPath is the main control socket of the tunnel on interface name:
// the one `show` lists, open to root and the read group.
func SocketPath(name string) string { return filepath.Join(Dir(), name+sockSuffix) }

// roleSocketPath is the socket open to role's group, beside the main socket
// at main. RoleRead's is the main socket itself.
func roleSocketPath(main string, r Role) string {
	if r == RoleRead {
		return main
	}
	return strings.TrimSuffix(main, sockSuffix) + roleSep + r.String() + sockSuffix
}

// Sockets lists the main control sockets in Dir(), sorted; none (and no
// error) if the directory does not exist. Files that are not sockets, and
// role sockets, are skipped.
func Sockets() ([]string, error) {
	dir := Dir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing control sockets in %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, sockSuffix) && !strings.Contains(n, roleSep) && e.Type()&os.ModeSocket != 0 {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	return out, nil
}

// validName refuses names that would put the socket outside Dir() or make a
// hidden or odd file; interface names are at most 15 bytes on Linux and
// never hold ':'.
func validName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/:%\x00 \t\n") || name == "." || name == ".." || name[0] == '.' {
		return fmt.Errorf("control socket: invalid interface name %q", name)
	}
	return nil
}
