package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Handler produces one reply (JSON) for a request.
type Handler func() ([]byte, error)

// Server answers requests on a unix socket: one request line per connection,
// one JSON reply, close. The socket lives in a directory made 0700 and is
// itself 0600, so only root (the daemon's user) can talk to it.
//
// Today every request is read-only ("status"). Admin commands (reload, peer
// changes) will come later and must be gated per session, e.g. by the peer's
// SO_PEERCRED uid, rather than by socket permissions alone; the handlers
// table below is where they will be registered, with their access level.
type Server struct {
	path     string
	ln       *net.UnixListener
	handlers map[string]Handler // read-only after Listen

	wg sync.WaitGroup // the accept loop and every connection goroutine

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, guarded by mu; Close closes them
	closed bool                  // guarded by mu; no new connections once set
}

// Listen creates the control socket for interface name and starts serving.
// A stale socket file (nobody listening) is replaced; a live one means another
// daemon runs for that name, and Listen fails.
func Listen(name string, status Handler) (*Server, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if status == nil {
		return nil, errors.New("control socket: nil status handler")
	}
	dir := Dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: creating %s: %v", dir, err)
	}
	path := SocketPath(name)
	if err := clearStale(path, name); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			// Another daemon won the race since clearStale looked.
			return nil, inUse(path, name)
		}
		return nil, fmt.Errorf("control socket %s: %v", path, unwrapOp(err))
	}
	// The directory is 0700 already, so nobody else could reach the socket
	// in the moment before this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: setting mode 0600: %v", path, err)
	}
	s := &Server{
		path:     path,
		ln:       ln,
		handlers: map[string]Handler{"status": status},
		conns:    make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func inUse(path, name string) error {
	return fmt.Errorf("control socket %s is in use: is another stunnel up for %s?", path, name)
}

// clearStale removes a socket file nobody accepts on. A live socket is an
// error, and so is a file there that is not a socket (not ours to delete).
func clearStale(path, name string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %v", path, unwrapOp(err))
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s exists and is not a socket: remove it", path)
	}
	c, err := net.DialTimeout("unix", path, Timeout)
	if err == nil {
		c.Close()
		return inUse(path, name)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket %s: removing stale socket: %v", path, unwrapOp(err))
	}
	return nil
}

// Path returns the socket's file name.
func (s *Server) Path() string { return s.path }

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: let it pass rather
			// than spin, and keep serving once it does.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(Timeout))
	reply := s.answer(c)
	_, _ = c.Write(reply) // the client may be gone; nothing to do about it
}

// answer reads one request from r and returns the reply to send.
func (s *Server) answer(r io.Reader) []byte {
	// The limit makes a long line end in EOF; a short one without a
	// newline (client half-closed) is taken as the whole request.
	line, err := bufio.NewReader(io.LimitReader(r, MaxRequest)).ReadString('\n')
	switch {
	case err == io.EOF && len(line) >= MaxRequest:
		return errorReply(fmt.Sprintf("request longer than %d bytes", MaxRequest))
	case err != nil && err != io.EOF:
		return errorReply("reading request: " + unwrapOp(err).Error())
	}
	req := strings.TrimSpace(line)
	h, ok := s.handlers[req]
	if !ok {
		if len(req) > 40 {
			req = req[:40] + "..."
		}
		return errorReply(fmt.Sprintf("unknown request %q", req))
	}
	out, err := callGuarded(h)
	if err != nil {
		return errorReply(err.Error())
	}
	return out
}

// callGuarded runs h, turning a panic into an error so that one bad status
// snapshot cannot take the daemon down.
func callGuarded(h Handler) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return h()
}

func errorReply(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, '\n')
}

// Close stops accepting, closes open connections, waits for every goroutine
// of the server (a handler already running is allowed to finish), and removes
// the socket file. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	// Closing a listener made by ListenUnix also unlinks its file.
	err := s.ln.Close()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("control socket %s: closing: %v", s.path, unwrapOp(err))
	}
	return nil
}

// unwrapOp drops the *net.OpError / *os.PathError wrapping whose text repeats
// the path we already print.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		err = op.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	return err
}
