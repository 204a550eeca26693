package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

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

// controlHandlers are the daemon's answers to control requests. reloads
// hands a reload to the daemon's main loop, which runs it as it runs SIGHUP's;
// stopping is closed once that loop has ended.
//
// StateSave and the ticket commands stay nil (501 "not available in this
// build yet") until the state file and session tickets are wired in here.
func controlHandlers(d *tunnel.Device, ds *dirSync, metricsHandler http.Handler, reloads chan<- chan error, stopping <-chan struct{},
	cfg *conf.Config, key statefile.StaticKey, ring *tickets.Ring, log *slog.Logger) control.Handlers {
	list, add, retire := ticketHandlers(ring, cfg)
	return control.Handlers{
		// A state saved while running carries tickets only: the running
		// sessions' counters are still in use (cmd/stunnel/sessions.go).
		StateSave:     func() error { return saveState(cfg, key, d.SaveTickets(), false, log) },
		TicketsList:   list,
		TicketsAdd:    add,
		TicketsRetire: retire,
		Status:        func() ([]byte, error) { return statusJSON(d, ds) },
		Metrics:       metricsHandler,
		Reload: func() error {
			reply := make(chan error, 1)
			select {
			case reloads <- reply:
			case <-stopping:
				return errors.New("the tunnel is stopping")
			}
			return <-reply
		},
		Rekey:      func(peer string) error { return peerErr(d.RekeyPeer(peer)) },
		Disconnect: func(peer string) error { return peerErr(d.DisconnectPeer(peer)) },
	}
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
