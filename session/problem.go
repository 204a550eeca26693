package session

import (
	"fmt"
	"time"
)

// Reason classifies why a peer has no working session, so code decides by
// kind and never by parsing the text shown to the operator.
type Reason uint8

const (
	// ReasonNone: the last handshake completed.
	ReasonNone Reason = iota
	// ReasonNoEndpoint: we would initiate but know no address for the peer.
	ReasonNoEndpoint
	// ReasonResolve: the endpoint's DNS name did not resolve.
	ReasonResolve
	// ReasonNoAnswer: initiations went out and nothing authenticated came back.
	ReasonNoAnswer
	// ReasonResponseRejected: a response arrived but did not authenticate,
	// or the peer refused our cipher (an authenticated refusal).
	ReasonResponseRejected
	// ReasonStartFailed: we could not build an initiation (randomness, key).
	ReasonStartFailed
	// ReasonKeySetup: the handshake finished but its keys could not be used.
	ReasonKeySetup
	// ReasonGaveUp: no handshake completed within the attempt time.
	ReasonGaveUp
	// ReasonResumptionRefused: the peer refused our ticket; we fall back to
	// a full handshake.
	ReasonResumptionRefused
	// ReasonWeRefused: we refused the peer's authenticated initiation
	// (cipher mismatch). Unauthenticated refusals (unknown ID, wrong key)
	// never land here: anyone can claim an ID.
	ReasonWeRefused
)

// Problem is the last thing that went wrong with a peer's handshakes, shown
// by `stunnel show` as last_error. Only authenticated events and our own
// attempts set it: a stranger claiming the peer's ID cannot.
type Problem struct {
	Reason   Reason
	Endpoint string // the address involved, if any
	Attempts int    // initiations sent in the attempt that failed
	Detail   string // the error text (never key material)
	// Cause is, for ReasonGaveUp, the problem that was current when we gave
	// up: a refusal is more useful to the operator than "no answer".
	Cause Reason
	At    time.Time
}

// String is the one-line text for logs and show; "" when there is no problem.
func (p Problem) String() string {
	switch p.Reason {
	case ReasonNone:
		return ""
	case ReasonNoEndpoint:
		return "no endpoint known: the peer has no endpoint configured and has not contacted us"
	case ReasonResolve:
		return fmt.Sprintf("cannot resolve endpoint %s: %s", p.Endpoint, p.Detail)
	case ReasonNoAnswer:
		return fmt.Sprintf("no answer from %s to %d handshake initiations (unreachable, or it does not know our peer id %s or public key)",
			p.Endpoint, p.Attempts, p.Detail)
	case ReasonResponseRejected:
		return fmt.Sprintf("handshake response from %s rejected: %s", p.Endpoint, p.Detail)
	case ReasonStartFailed:
		return "cannot start handshake: " + p.Detail
	case ReasonKeySetup:
		return "cannot use the new session's keys: " + p.Detail
	case ReasonResumptionRefused:
		return fmt.Sprintf("resumption refused by %s (%s): falling back to a full handshake", p.Endpoint, p.Detail)
	case ReasonWeRefused:
		return fmt.Sprintf("refused handshake from %s: %s", p.Endpoint, p.Detail)
	case ReasonGaveUp:
		if p.Cause == ReasonNone || p.Cause == ReasonNoAnswer || p.Cause == ReasonNoEndpoint && p.Endpoint != "" {
			return fmt.Sprintf("handshake did not complete: no answer from %s after %d attempts", p.Endpoint, p.Attempts)
		}
		return fmt.Sprintf("%s; gave up after %d attempts", p.Detail, p.Attempts)
	}
	return p.Detail
}
