package control

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Role is what a caller may do. Roles are a set: a caller may hold several.
type Role uint8

const (
	// RoleRead is a read-only session: status and metrics.
	RoleRead Role = 1 << iota
	// RoleOperate is a user session: reload, rekey, disconnect, state save.
	// It includes RoleRead: an operator must see what it acts on.
	RoleOperate
	// RoleOfficer is the security officer: ticket keys and anything else
	// that touches key material. It does not include RoleRead: whoever
	// guards keys has no need for who talks to whom and how much.
	RoleOfficer

	allRoles = RoleRead | RoleOperate | RoleOfficer
)

// roles lists the single roles in a fixed order, for messages and sockets.
var roles = []Role{RoleRead, RoleOperate, RoleOfficer}

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleOperate:
		return "operate"
	case RoleOfficer:
		return "officer"
	}
	var names []string
	for _, one := range roles {
		if r&one != 0 {
			names = append(names, one.String())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}

// Group is a unix group that grants a role. The zero Group grants nothing.
type Group struct {
	Name string
	GID  uint32
}

// IsSet reports whether the group was configured.
func (g Group) IsSet() bool { return g.Name != "" }

// Groups names the group of each role, as [control] configures them. A role
// without a group is root's alone.
type Groups struct {
	Read, Operate, Officer Group
}

func (gs Groups) of(r Role) Group {
	switch r {
	case RoleRead:
		return gs.Read
	case RoleOperate:
		return gs.Operate
	case RoleOfficer:
		return gs.Officer
	}
	return Group{}
}

// Creds are a caller's unix credentials, as the kernel recorded them when it
// connected: nothing in them comes from the caller's request.
type Creds struct {
	PID, UID, GID uint32
	Groups        []uint32 // supplementary groups
}

func (c Creds) inGroup(g Group) bool {
	return g.IsSet() && (c.GID == g.GID || slices.Contains(c.Groups, g.GID))
}

// Grants returns the roles the caller holds: root holds all; otherwise each
// configured group the caller is in (primary or supplementary) grants its
// role, and operate brings read with it.
func (gs Groups) Grants(c Creds) Role {
	if c.UID == 0 {
		return allRoles
	}
	var r Role
	if c.inGroup(gs.Read) {
		r |= RoleRead
	}
	if c.inGroup(gs.Operate) {
		r |= RoleOperate | RoleRead
	}
	if c.inGroup(gs.Officer) {
		r |= RoleOfficer
	}
	return r
}

// denied is the refusal of a command that needs role: it names the role and
// the group(s) that grant it, so the caller knows whom to ask.
func (gs Groups) denied(need Role) string {
	var grant []string
	if g := gs.of(need); g.IsSet() {
		grant = append(grant, g.Name)
	}
	if need == RoleRead && gs.Operate.IsSet() && gs.Operate.Name != gs.Read.Name {
		grant = append(grant, gs.Operate.Name)
	}
	if len(grant) == 0 {
		return fmt.Sprintf("permission denied: needs the %s role (root only: [control] %s_group is not set)", need, need)
	}
	return fmt.Sprintf("permission denied: needs the %s role (group %s)", need, strings.Join(grant, " or "))
}

// peerCreds reads the kernel's record of who connected c: SO_PEERCRED for
// pid, uid and primary gid, SO_PEERGROUPS for the supplementary groups.
func peerCreds(c *net.UnixConn) (Creds, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Creds{}, err
	}
	var cr Creds
	var opErr error
	err = raw.Control(func(fd uintptr) {
		var u *unix.Ucred
		if u, opErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); opErr != nil {
			opErr = fmt.Errorf("SO_PEERCRED: %v", opErr)
			return
		}
		cr = Creds{PID: uint32(u.Pid), UID: u.Uid, GID: u.Gid}
		cr.Groups, opErr = peerGroups(int(fd))
	})
	if err != nil {
		return Creds{}, err
	}
	return cr, opErr
}

// soPeerGroups is SO_PEERGROUPS (Linux 4.13), the same number on every
// architecture; x/sys/unix does not export it for all of them.
const soPeerGroups = 0x3b

// peerGroups asks for SO_PEERGROUPS, growing the buffer when the kernel says
// ERANGE (a caller may be in up to 65536 groups).
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, soPeerGroups,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch {
		case errno == 0:
			return buf[:n/4], nil
		case errno == unix.ERANGE && int(n/4) > len(buf) && n/4 <= 1<<16:
			buf = make([]uint32, n/4)
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %v", errno)
		}
	}
}
