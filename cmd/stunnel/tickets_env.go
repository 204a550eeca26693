package main

import (
	"fmt"
	"os"

	"stunnel/tickets"
)

// TEMPORARY (issue 20, until conf's [tickets] table from branch h15 is
// merged): the ticket-key ring comes from the environment, so gateway
// groups can be run and tested now. The lead replaces this with the
// [tickets] table (key_file, and resumption on/off) and deletes this file.
//
//	STUNNEL_TICKET_KEY_FILE=PATH  the group's shared ticket key file
//	STUNNEL_TICKETS=1             tickets on with keys generated in memory
//	                              (a client resumes with what it was given)
const (
	envTicketKeyFile = "STUNNEL_TICKET_KEY_FILE"
	envTickets       = "STUNNEL_TICKETS"
)

// ticketRingFromEnv is the ring the environment asks for, nil for none.
func ticketRingFromEnv() (*tickets.Ring, error) {
	path := os.Getenv(envTicketKeyFile)
	if path == "" {
		if os.Getenv(envTickets) == "1" {
			return tickets.NewRing(tickets.Options{}), nil
		}
		return nil, nil
	}
	r := tickets.NewRing(tickets.Options{})
	if err := r.LoadFile(path); err != nil {
		return nil, fmt.Errorf("%s=%s: %w", envTicketKeyFile, path, err)
	}
	return r, nil
}
