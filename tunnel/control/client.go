package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Query sends one request (a newline is added if missing) to the control
// socket at path and returns the reply. The whole exchange is bounded by
// Timeout and the reply by MaxReply. If nothing listens there, the error wraps
// ErrNotRunning; an {"error": ...} reply comes back as an error.
func Query(path string, request string) ([]byte, error) {
	if !strings.HasSuffix(request, "\n") {
		request += "\n"
	}
	if len(request) > MaxRequest {
		return nil, fmt.Errorf("control socket %s: request longer than %d bytes", path, MaxRequest)
	}
	c, err := net.DialTimeout("unix", path, Timeout)
	if err != nil {
		cause := unwrapOp(err)
		if errors.Is(cause, syscall.ENOENT) || errors.Is(cause, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s (%v)", ErrNotRunning, path, cause)
		}
		return nil, fmt.Errorf("control socket %s: %v", path, cause)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c, request); err != nil {
		return nil, fmt.Errorf("control socket %s: sending request: %v", path, unwrapOp(err))
	}
	reply, err := io.ReadAll(io.LimitReader(c, MaxReply+1))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: reading reply: %v", path, unwrapOp(err))
	}
	if len(reply) > MaxReply {
		return nil, fmt.Errorf("control socket %s: reply longer than %d bytes", path, MaxReply)
	}
	if len(reply) == 0 {
		return nil, fmt.Errorf("control socket %s: empty reply", path)
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(reply, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("control socket %s: %s", path, e.Error)
	}
	return reply, nil
}
