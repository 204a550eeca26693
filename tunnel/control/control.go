// Package control is the daemon's control socket: a unix socket per tunnel
// where `stunnel show` asks for status. The protocol is one request line per
// connection ("status\n"), one JSON reply, then the server closes. A failed
// request gets {"error": "..."} instead, so no reply type may use a top-level
// "error" key. The package knows nothing of the tunnel: replies come from
// plain handler funcs.
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

const (
	// DefaultDir is where sockets live unless $STUNNEL_RUN_DIR says otherwise.
	DefaultDir = "/run/stunnel"
	// RunDirEnv names the environment variable that moves the socket
	// directory (for tests and unprivileged runs).
	RunDirEnv = "STUNNEL_RUN_DIR"
	// Timeout bounds one exchange on either side: a client that connects and
	// says nothing cannot hold a server goroutine longer than this.
	Timeout = 2 * time.Second
	// MaxRequest bounds a request line, newline included.
	MaxRequest = 256
	// MaxReply bounds what Query accepts: status with thousands of peers
	// fits; a runaway server does not exhaust the client's memory.
	MaxReply = 16 << 20
	// sockSuffix ends every socket's file name.
	sockSuffix = ".sock"
)

// ErrNotRunning is wrapped by Query's error when nothing listens on the
// socket (no file, or a stale file nobody accepts on).
var ErrNotRunning = errors.New("no tunnel running")

// Dir is where sockets live: $STUNNEL_RUN_DIR if set, else /run/stunnel.
func Dir() string {
	if d := os.Getenv(RunDirEnv); d != "" {
		return d
	}
	return DefaultDir
}

// SocketPath is the control socket of the tunnel on interface name.
func SocketPath(name string) string { return filepath.Join(Dir(), name+sockSuffix) }

// Sockets lists the control sockets in Dir(), sorted; none (and no error) if
// the directory does not exist. Files that are not sockets are skipped.
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
		if strings.HasSuffix(e.Name(), sockSuffix) && e.Type()&os.ModeSocket != 0 {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// validName refuses names that would put the socket outside Dir() or make a
// hidden or odd file; interface names are at most 15 bytes on Linux.
func validName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/\x00 \t\n") || name == "." || name == ".." {
		return fmt.Errorf("control socket: invalid interface name %q", name)
	}
	return nil
}
