package control

import (
	"bytes"
	"strings"
)

// Requests no handler sees. net/http answers some requests itself, before
// ServeHTTP runs: a malformed request line, headers over MaxHeaderBytes,
// HTTP/1.1 without Host, a Transfer-Encoding or an Expect it does not
// take; and a caller may hang up, or stall past Timeout, before its request
// is read whole. These are malformed requests too, and the audit log has a
// line for every refused or malformed request of any kind
// (docs/CONFIGURATION.md, "Audit log"), so the connection notices them:
// a reply written before any request reached ServeHTTP can only be
// net/http's refusal, and a connection that closes after bytes were read
// but before a request reached ServeHTTP held one that was never served.
// A connection that sent nothing is no request and leaves no line.

// connKey is the context key of a request's *ctlConn, so ServeHTTP can
// mark it dispatched.
type connKey struct{}

// Write passes b on; the first write on a connection whose request never
// reached ServeHTTP is net/http's own refusal, audited with its status.
func (c *ctlConn) Write(b []byte) (int, error) {
	if !c.dispatched.Load() {
		status, _, _ := bytes.Cut(b, []byte("\r\n"))
		c.unserved(strings.TrimPrefix(string(status[:min(len(status), 100)]), "HTTP/1.1 "))
	}
	return c.UnixConn.Write(b)
}

// unserved audits, once per connection, a request no handler saw: reply is
// the status net/http answered, "" when it answered nothing.
func (c *ctlConn) unserved(reply string) {
	c.unservedOnce.Do(func() {
		if c.lim.unserved != nil {
			c.lim.unserved(c, reply)
		}
	})
}

// auditUnserved is limiter.unserved: one audit line for c's request.
func (s *Server) auditUnserved(c *ctlConn, reply string) {
	outcome := "refused: malformed request: " + reply
	if reply == "" {
		outcome = "refused: incomplete request: the connection closed or timed out before the request was read whole"
		s.lim.mu.Lock()
		if s.lim.closed {
			outcome = "refused: not served: the daemon was stopping"
		}
		s.lim.mu.Unlock()
	}
	s.auditLine(c.creds, c.credsErr == nil, "unknown", "", outcome)
}
