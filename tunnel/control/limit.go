package control

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The connection limit. Without one, anyone who may connect to a control
// socket (a monitoring account in the read group, say) could open thousands
// of connections and hold them, each a file descriptor, a goroutine and its
// buffers, until the daemon runs out, or until nobody else gets in.
//
// MaxConns bounds the connections open at once across all of a tunnel's
// sockets. Normal use needs a handful: a Prometheus scrape every 15 s, an
// operator's `show`, a reload, a script polling status, each over in
// milliseconds; 64 is ten times that with room for several scrapers, and
// 64 goroutines with their buffers are nothing to the daemon (a big
// status or metrics reply is another matter, and the limit bounds how many
// are made at once too).
//
// Like PostgreSQL's superuser_reserved_connections and reserved_connections,
// the last slots are kept for the more trusted callers, so that whoever can
// only read cannot lock out whoever must act: callers holding only the read
// role (or none, or whose credentials the kernel would not give) get at
// most MaxConns-roleReserved-rootReserved (48) slots, callers with the
// operate or officer role MaxConns-rootReserved (56), and root all 64. A
// flood from the read group leaves `stunnel reload`, `rekey`, `disconnect`
// and `tickets` working; a flood from an operator or officer account leaves
// root's. (Stopping the tunnel is a signal, SIGTERM, not a control command:
// no flood can stop that.)
//
// Within every tier, one uid may hold at most UserShare connections:
// without it one account looping `stunnel show` takes all 48 read-only
// slots and locks out every other reader, the node exporter's textfile job
// or another admin's `show`. A user's normal use is one connection at a
// time for milliseconds, a script's a few in parallel; 16 is several times
// that, while one account takes at most a third of the read-only tier (32
// left to the rest) and 16 of the operators' 56. It is per uid, not per
// process: a user starts as many processes as it likes. Root has no share
// (its slots are the last resort, and root can stop the daemon anyway).
// Callers whose credentials the kernel would not give count as one user
// (their requests are refused anyway), never as root. When both the share
// and the tier are used up the refusal names the share: that one is the
// caller's own doing.
//
// A connection holds its slot for one request at most (keep-alive is off):
// headers and body must arrive within Timeout, and the reply must be taken
// within ReplyTimeout of the request, so a client that sends nothing, sends
// slowly or reads slowly loses its slot within Timeout or ReplyTimeout.
//
// A refused connection gets a 503 reply, written without waiting, and is
// closed at once: the client says "control socket busy"; the daemon counts
// it by reason and logs one warning line per refusedLogInterval at most,
// with the number refused since the last line and the uid, pid and reason
// of the last one, so a flood cannot flood the journal too.
const (
	MaxConns           = 64
	UserShare          = 16
	rootReserved       = 8
	roleReserved       = 8
	refusedLogInterval = 10 * time.Second
)

// tier is how many slots a caller may use: it may connect while fewer than
// tier.limit() connections are open.
type tier uint8

const (
	tierRead tier = iota // the read role, or none, or unknown credentials
	tierRole             // operate or officer
	tierRoot
)

func (t tier) limit() int {
	switch t {
	case tierRoot:
		return MaxConns
	case tierRole:
		return MaxConns - rootReserved
	}
	return MaxConns - rootReserved - roleReserved
}

func (t tier) String() string {
	switch t {
	case tierRoot:
		return "root"
	case tierRole:
		return "operate and officer callers"
	}
	return "read-only callers"
}

// shareKey names the user whose share a connection counts against: its
// uid, or unknownUser when the kernel would not say who connected.
type shareKey int64

const unknownUser shareKey = -1

func shareOf(cr Creds, credsErr error) (key shareKey, exempt bool) {
	if credsErr != nil {
		return unknownUser, false // the zero Creds would read as root
	}
	return shareKey(cr.UID), cr.UID == 0
}

// busyShare is the refusal of a user at UserShare.
func busyShare(user shareKey, held int) string {
	who := fmt.Sprintf("uid %d holds", user)
	if user == unknownUser {
		who = "callers whose credentials are unknown hold"
	}
	return fmt.Sprintf("control socket busy: %s %d connections, the most one user may hold; try again", who, held)
}

func tierOf(gs Groups, cr Creds, credsErr error) tier {
	switch {
	case credsErr != nil:
		return tierRead
	case cr.UID == 0:
		return tierRoot
	case gs.Grants(cr)&(RoleOperate|RoleOfficer) != 0:
		return tierRole
	}
	return tierRead
}

// limiter admits connections up to their caller's tier limit, for all the
// sockets of one Server. Its fields before mu are set in Listen and only
// read after.
type limiter struct {
	groups  Groups
	credsOf func(*net.UnixConn) (Creds, error)
	log     *slog.Logger
	now     func() time.Time
	// unserved audits a request that reached no handler (unserved.go);
	// nil audits nothing.
	unserved func(c *ctlConn, reply string)

	mu   sync.Mutex
	open map[*ctlConn]struct{} // admitted and not yet closed; guarded by mu
	// byUser counts open by shareKey, root's too; a user is deleted at
	// 0, so it holds only the users with a connection open. Guarded by mu.
	byUser       map[shareKey]int
	closed       bool      // Close has begun: admit nothing more; guarded by mu
	refusedLimit uint64    // refusals for a full tier; guarded by mu
	refusedShare uint64    // refusals for a user at UserShare; guarded by mu
	unlogged     int       // refusals since the last warning line; guarded by mu
	lastLog      time.Time // of the last warning line; zero: none yet; guarded by mu
}

// ctlConn is an admitted connection: it carries the caller's credentials,
// read once at accept, and gives its slot back when closed.
type ctlConn struct {
	*net.UnixConn
	creds    Creds
	credsErr error
	user     shareKey
	lim      *limiter
	release  sync.Once
	readAny  atomic.Bool // the server has read a byte: a request began
	// dispatched: the request reached ServeHTTP, which audits it; else
	// unserved does, once (unserved.go).
	dispatched   atomic.Bool
	unservedOnce sync.Once
}

func (c *ctlConn) Read(b []byte) (int, error) {
	n, err := c.UnixConn.Read(b)
	if n > 0 {
		c.readAny.Store(true)
	}
	return n, err
}

func (c *ctlConn) Close() error {
	if c.readAny.Load() && !c.dispatched.Load() {
		c.unserved("") // bytes came, no request was served: cut off or timed out
	}
	err := c.UnixConn.Close()
	c.release.Do(func() {
		c.lim.mu.Lock()
		delete(c.lim.open, c)
		if c.lim.byUser[c.user]--; c.lim.byUser[c.user] <= 0 {
			delete(c.lim.byUser, c.user)
		}
		c.lim.mu.Unlock()
	})
	return err
}

// admit reads who connected uc and returns it as a ctlConn, or refuses it
// (replies 503 and closes it) and returns nil.
func (l *limiter) admit(uc *net.UnixConn) *ctlConn {
	cr, credsErr := l.credsOf(uc)
	t := tierOf(l.groups, cr, credsErr)
	user, exempt := shareOf(cr, credsErr)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		uc.Close()
		return nil
	}
	n, held := len(l.open), l.byUser[user]
	share := !exempt && held >= UserShare
	if !share && n < t.limit() {
		c := &ctlConn{UnixConn: uc, creds: cr, credsErr: credsErr, user: user, lim: l}
		l.open[c] = struct{}{}
		l.byUser[user]++
		l.mu.Unlock()
		return c
	}
	reason := "tier_limit"
	if share {
		l.refusedShare++
		reason = "uid_share"
	} else {
		l.refusedLimit++
	}
	l.unlogged++
	logNow, refused, total := false, 0, l.refusedLimit+l.refusedShare
	if now := l.now(); l.lastLog.IsZero() || now.Sub(l.lastLog) >= refusedLogInterval {
		logNow, refused, l.lastLog, l.unlogged = true, l.unlogged, now, 0
	}
	l.mu.Unlock()
	if logNow {
		var uid, pid any = cr.UID, cr.PID
		if credsErr != nil {
			uid, pid = "unknown", "unknown" // the zero Creds would read as root
		}
		l.log.Warn("control socket busy: refusing connections", "refused", refused, "refused_total", total,
			"open", n, "limit", t.limit(), "tier", t.String(), "last_uid", uid, "last_pid", pid,
			"last_uid_open", held, "last_reason", reason)
	}
	if share {
		refuse(uc, busyShare(user, held))
		return nil
	}
	// The caller's own limit, not only the count: with operators' or
	// root's connections open the count is above it, and alone it would
	// read as the limit.
	refuse(uc, fmt.Sprintf("control socket busy: %d connections open, %s may hold %d; try again", n, t, t.limit()))
	return nil
}

// refuse answers a connection that gets no slot and closes it. The reply is
// written without waiting (the socket is non-blocking and a fresh one has
// room for it): a client that reads nothing costs the accept loop nothing.
// The client's request is never read; the client still gets the reply, as
// unix sockets deliver what is queued before the reset.
func refuse(uc *net.UnixConn, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	body = append(body, '\n')
	reply := fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if raw, err := uc.SyscallConn(); err == nil {
		_ = raw.Write(func(fd uintptr) bool {
			_, _ = unix.Write(int(fd), reply)
			return true // one try, never wait
		})
	}
	uc.Close()
}

// count returns the connections open now and the refusals so far, for a
// full tier and for a user at UserShare.
func (l *limiter) count() (open int, tierLimit, uidShare uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open), l.refusedLimit, l.refusedShare
}

// shut admits nothing more and closes the connections on which the caller
// has sent nothing yet (the server has read nothing and nothing waits in
// the socket): Shutdown would otherwise wait for each until Timeout cut it
// off. Connections with a request under way are left to Shutdown.
func (l *limiter) shut() {
	l.mu.Lock()
	l.closed = true
	var silent []*ctlConn
	for c := range l.open {
		if !c.started() {
			silent = append(silent, c)
		}
	}
	l.mu.Unlock()
	for _, c := range silent {
		c.Close()
	}
}

// started reports whether a request began on c: the server read from it, or
// bytes wait in its socket. A connection closed meanwhile counts as started
// (nothing to do for it).
func (c *ctlConn) started() bool {
	raw, err := c.UnixConn.SyscallConn()
	if err != nil {
		return true
	}
	queued := 0
	var ioErr error
	if err := raw.Control(func(fd uintptr) { queued, ioErr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ioErr != nil {
		return true
	}
	return queued > 0 || c.readAny.Load()
}

// ctlListener admits connections through its Server's limiter. Close is
// idempotent and its second call returns nil: Server.Close closes the
// listeners before http.Server.Shutdown does again, and an error from
// Shutdown would cut off the requests it should let finish.
type ctlListener struct {
	*net.UnixListener
	lim       *limiter
	closeOnce sync.Once
}

func (l *ctlListener) Accept() (net.Conn, error) {
	for {
		uc, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if c := l.lim.admit(uc); c != nil {
			return c, nil
		}
	}
}

func (l *ctlListener) Close() error {
	var err error
	l.closeOnce.Do(func() { err = l.UnixListener.Close() })
	return err
}
