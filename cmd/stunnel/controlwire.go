package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"

	"stunnel/conf"
	"stunnel/statefile"
	"stunnel/tickets"
	"stunnel/tunnel"
	"stunnel/tunnel/control"
)

// controlGroups maps [control] to the control package's groups.
func controlGroups(c conf.Control) control.Groups {
	g := func(x conf.Group) control.Group { return control.Group{Name: x.Name, GID: x.GID} }
	return control.Groups{Read: g(c.Read), Operate: g(c.Operate), Officer: g(c.Officer)}
}

// runningConfig is the configuration the daemon runs: the start-up one, then
// each reload's. The atomic pointer is what guards it: run's main loop is the
// one writer (it stores after every reload, successful or not), and control
// handlers load it from their own goroutines. A stored config is never
// written again (reload returns a fresh one, its secrets already zeroed), so
// a reader needs nothing beyond the load.
type runningConfig = atomic.Pointer[conf.Config]

func newRunningConfig(cfg *conf.Config) *runningConfig {
	r := new(runningConfig)
	r.Store(cfg)
	return r
}

// controlHandlers are the daemon's answers to control requests. reloads
// hands a reload to the daemon's main loop, which runs it as it runs SIGHUP's;
// stopping is closed once that loop has ended. running is read per request,
// so a reload's state_file and [tickets] lifetimes count at once.
func controlHandlers(d *tunnel.Device, ds *dirSync, metricsHandler http.Handler, reloads chan<- chan error, stopping <-chan struct{},
	running *runningConfig, key statefile.StaticKey, ring *tickets.Ring, log *slog.Logger) control.Handlers {
	list, add, retire := ticketHandlers(ring, running)
	return control.Handlers{
		// A state saved while running carries tickets only: the running
		// sessions' counters are still in use (cmd/stunnel/sessions.go).
		StateSave:     func() error { return saveState(running.Load(), key, d.SaveTickets(), false, log) },
		TicketsList:   list,
		TicketsAdd:    add,
		TicketsRetire: retire,
		Status:        func() ([]byte, error) { return statusJSON(d, ds) },
		Metrics:       metricsHandler,
		Reload: func() (string, error) {
			reply := make(chan error, 1)
			select {
			case reloads <- reply:
			case <-stopping:
				return "", errors.New("the tunnel is stopping")
			}
			if err := <-reply; err != nil {
				return "", err
			}
			return absConfigPath(running.Load().Path), nil
		},
		Rekey:      func(peer string) error { return peerErr(d.RekeyPeer(peer)) },
		Disconnect: func(peer string) error { return peerErr(d.DisconnectPeer(peer)) },
	}
}

// absConfigPath is the config file a reload reads (conf.Load of the path
// `up -c` was given, relative to the daemon's working directory), made
// absolute for a client that runs elsewhere. If the working directory is
// gone, the path as given is all there is to say.
func absConfigPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// peerErr makes an unknown peer a 404 for the client.
func peerErr(err error) error {
	if errors.Is(err, tunnel.ErrNoPeer) {
		return control.NotFound(err)
	}
	return err
}

// reloadProblem turns conf's list of problems into one line for the client:
// the first problem, and how many more `stunnel check` shows.
func reloadProblem(err error) error {
	var problems *conf.Errors
	if errors.As(err, &problems) && len(*problems) > 0 {
		msg := (*problems)[0].String()
		if n := len(*problems) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more; run stunnel check)", n)
		}
		return errors.New("reload failed, running configuration kept: " + msg)
	}
	return fmt.Errorf("reload failed, running configuration kept: %v", err)
}
