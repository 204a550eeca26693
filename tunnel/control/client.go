package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// RemoteError is a refusal or failure the daemon answered with. Its text is
// the daemon's message as it is, e.g. "permission denied: needs the operate
// role (group stunnel-ops)".
type RemoteError struct {
	Status int // HTTP status: 403 refused, 404 no such peer, 501 not in this build...
	Msg    string
}

func (e *RemoteError) Error() string { return e.Msg }

// ErrNoAccess is wrapped when the caller may connect to none of the
// tunnel's sockets: it is root in none, and in none of the [control] groups.
var ErrNoAccess = errors.New("permission denied")

// Query runs the command named cmd (see Commands) with arg on the tunnel
// whose main socket is main, and returns the reply body. It connects
// through the socket of the role cmd needs if it may, else through any
// other of the tunnel's sockets that lets it in; the daemon decides. The
// exchange is bounded by ReplyTimeout and the reply by MaxReply. If nothing
// listens there, the error wraps ErrNotRunning.
func Query(main, cmdName, arg string) ([]byte, error) {
	cmd, ok := CommandByName(cmdName)
	if !ok {
		return nil, fmt.Errorf("control: unknown command %q", cmdName)
	}
	c, err := dialAny(main, cmd.Role)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return exchange(c, main, cmd, arg)
}

// exchange sends cmd with arg over c, connected to main, and reads the
// reply.
func exchange(c net.Conn, main string, cmd Command, arg string) ([]byte, error) {
	_ = c.SetDeadline(time.Now().Add(replyTimeout))

	var payload []byte
	if cmd.Method == http.MethodPost || arg != "" {
		payload, _ = json.Marshal(body{Arg: arg})
	}
	req, err := http.NewRequest(cmd.Method, "http://stunnel"+cmd.Path, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %v", main, err)
	}
	if payload == nil {
		req.Body, req.ContentLength = nil, 0
	}
	req.Close = true
	// A daemon at its connection limit replies 503 and closes without
	// reading the request, so sending may fail with the reply there to
	// read: the reply says more than "broken pipe".
	sendErr := req.Write(c)
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		if sendErr != nil {
			return nil, fmt.Errorf("control socket %s: sending request: %v", main, unwrapOp(sendErr))
		}
		return nil, fmt.Errorf("control socket %s: reading reply: %v", main, unwrapOp(err))
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxReply)+1))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: reading reply: %v", main, unwrapOp(err))
	}
	if len(reply) > maxReply {
		return nil, fmt.Errorf("control socket %s: reply longer than %d bytes", main, maxReply)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(reply, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("control socket %s: %s", main, resp.Status)
		}
		return nil, &RemoteError{Status: resp.StatusCode, Msg: e.Error}
	}
	return reply, nil
}

// dialAny connects to the socket of role need, or else to any other socket
// of the tunnel the caller may open: the main one, then the role sockets.
func dialAny(main string, need Role) (net.Conn, error) {
	order := []string{roleSocketPath(main, need)}
	for _, r := range roles {
		if p := roleSocketPath(main, r); p != order[0] {
			order = append(order, p)
		}
	}
	var denied, mainErr error
	for i, path := range order {
		c, err := net.DialTimeout("unix", path, Timeout)
		if err == nil {
			return c, nil
		}
		cause := unwrapOp(err)
		switch {
		case errors.Is(cause, syscall.EACCES) || errors.Is(cause, syscall.EPERM):
			denied = cause
		case path == main:
			mainErr = cause
		case errors.Is(cause, syscall.ENOENT) || errors.Is(cause, syscall.ECONNREFUSED):
			// a role without a group has no socket
		default:
			if i == 0 {
				mainErr = cause
			}
		}
	}
	if mainErr != nil && (errors.Is(mainErr, syscall.ENOENT) || errors.Is(mainErr, syscall.ECONNREFUSED)) {
		return nil, fmt.Errorf("%w at %s (%v)", ErrNotRunning, main, mainErr)
	}
	if denied != nil {
		return nil, fmt.Errorf("%w: cannot connect to the control socket %s: not root and in none of the groups its [control] names (needs the %s role)", ErrNoAccess, main, need)
	}
	if mainErr != nil {
		return nil, fmt.Errorf("control socket %s: %v", main, mainErr)
	}
	return nil, fmt.Errorf("%w at %s", ErrNotRunning, main)
}
