package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The socket layout (docs/CONFIGURATION.md, [control]):
//
//	Dir()                     0755 root   anyone may look up a socket by name
//	NAME.sock                 0660 root:read_group     (0600 root if unset)
//	NAME:operate.sock         0660 root:operate_group  (absent if unset)
//	NAME:officer.sock         0660 root:officer_group  (absent if unset)
//
// A socket file has one group, so each role with a group gets its own
// socket; connecting to a unix socket needs write permission on its file,
// so a caller in none of the groups cannot connect at all. Every socket
// serves every command: the role is checked per request from the caller's
// credentials, whichever socket it came through.

// prepareDir makes the socket directory, or checks the existing one: a real
// directory (not a symlink), ours, writable by nobody else, so no one can
// swap a socket under a client. It is made 0755 so callers in the role
// groups can reach the sockets in it.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("control socket: creating %s: %v", dir, unwrapOp(err))
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("control socket: %s: %v", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("control socket directory %s is not a directory (a symlink?): remove it or set %s", dir, RunDirEnv)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("control socket directory %s belongs to uid %d, not to us (uid %d): remove it or set %s", dir, st.Uid, os.Geteuid(), RunDirEnv)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("control socket directory %s is writable by group or others (mode %04o): chmod 0755 it", dir, st.Mode&0o7777)
	}
	if st.Mode&0o7777 != 0o755 {
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("control socket: chmod 0755 %s: %v", dir, unwrapOp(err))
		}
	}
	return nil
}

// listenSocket binds a socket at path with mode 0660 and group g (0600 and
// our own group when g is unset), without a moment in which it has any
// other mode or owner: it is bound in a fresh 0700 directory beside path,
// set up there, and renamed into place. The rename refuses to replace
// anything (RENAME_NOREPLACE): whatever appeared at path since clearStale
// looked, a planted symlink included, stays untouched and is an error.
func listenSocket(path, name string, g Group) (*net.UnixListener, uint64, error) {
	stage, err := os.MkdirTemp(filepath.Dir(path), ".stage-")
	if err != nil {
		return nil, 0, fmt.Errorf("control socket %s: %v", path, unwrapOp(err))
	}
	defer os.RemoveAll(stage)
	tmp := filepath.Join(stage, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, 0, fmt.Errorf("control socket %s: %v", path, unwrapOp(err))
	}
	ln.SetUnlinkOnClose(false) // its name changes; Server.Close removes it
	fail := func(err error) (*net.UnixListener, uint64, error) {
		ln.Close()
		return nil, 0, err
	}
	mode := os.FileMode(0o600)
	if g.IsSet() {
		if err := os.Lchown(tmp, -1, int(g.GID)); err != nil {
			return fail(fmt.Errorf("control socket %s: giving it to group %s: %v", path, g.Name, unwrapOp(err)))
		}
		mode = 0o660
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(fmt.Errorf("control socket %s: setting mode %04o: %v", path, mode, unwrapOp(err)))
	}
	var st unix.Stat_t
	if err := unix.Lstat(tmp, &st); err != nil {
		return fail(fmt.Errorf("control socket %s: %v", path, err))
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: link(2) never
		// replaces either.
		if err = os.Link(tmp, path); err == nil {
			err = os.Remove(tmp)
		}
		err = unwrapOp(err)
	}
	if errors.Is(err, unix.EEXIST) {
		return fail(fmt.Errorf("control socket %s appeared while we started (another stunnel up for %s?): check it and remove it", path, name))
	}
	if err != nil {
		return fail(fmt.Errorf("control socket %s: moving into place: %v", path, err))
	}
	return ln, st.Ino, nil
}

// CheckFree fails when a live control socket for name exists: another
// daemon runs this tunnel. `up` asks before it touches anything, so that a
// second start (another namespace sharing the run directory) fails without
// bringing up a tunnel, handshaking with the first one's peers in its name
// or writing its state file. It judges the socket path as Listen will
// (probe): a symlink, a file that is not a socket or not ours, or a socket
// it cannot tell is dead fails here already, not after the tunnel is up; a
// stale socket is left for Listen to remove. Listen checks again when it
// binds, so two starts at once still cannot both listen.
func CheckFree(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	_, err := probe(SocketPath(name), name)
	return err
}

func inUse(path, name string) error {
	return fmt.Errorf("control socket %s is in use: is another stunnel up for %s?", path, name)
}

// probe looks at a control socket path before a daemon for name binds it:
// nil when nothing is there, stale when it is a socket of ours that nobody
// accepts on (a daemon that crashed left it). It never follows a symlink
// (Lstat), and it fails on anything else: a live socket (another daemon
// runs for this tunnel), a symlink, a file that is not a socket or not
// ours, and a socket whose dial fails otherwise than refused (EACCES, a
// timeout): only ECONNREFUSED shows that nobody listens.
func probe(path, name string) (stale bool, err error) {
	var st unix.Stat_t
	err = unix.Lstat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("control socket %s: %v", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return false, fmt.Errorf("control socket %s is a symlink, not a socket: not following it; remove it", path)
	case st.Mode&unix.S_IFMT != unix.S_IFSOCK:
		return false, fmt.Errorf("control socket %s exists and is not a socket: remove it", path)
	case int(st.Uid) != os.Geteuid():
		return false, fmt.Errorf("control socket %s belongs to uid %d, not to us: remove it", path, st.Uid)
	}
	c, err := net.DialTimeout("unix", path, Timeout)
	if err == nil {
		c.Close()
		return false, inUse(path, name)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return false, fmt.Errorf("control socket %s: checking whether it is live: %v", path, unwrapOp(err))
	}
	return true, nil
}

// clearStale removes a socket file nobody accepts on, left by a daemon that
// crashed (probe); a live socket means another daemon runs for this tunnel.
func clearStale(path, name string) error {
	stale, err := probe(path, name)
	if err != nil || !stale {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket %s: removing stale socket: %v", path, unwrapOp(err))
	}
	return nil
}

// removeIfOurs deletes path if it is still the socket we bound (inode ino):
// a daemon that took the name over since must keep its socket.
func removeIfOurs(path string, ino uint64) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) == nil && st.Ino == ino && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		_ = os.Remove(path)
	}
}

// unwrapOp drops the *net.OpError / *os.PathError wrapping whose text repeats
// the path we already print.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		err = op.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
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
