package conf

import (
	"fmt"
	"os/user"
	"strconv"
)

// controlKeys are the keys of [control].
var controlKeys = []string{"read_group", "operate_group", "officer_group"}

// Control is the [control] table: which unix group holds which role on the
// control socket. A role without a group is root's alone.
type Control struct {
	Read, Operate, Officer Group
}

// lookupGroup is user.LookupGroup; tests give it groups the host lacks.
var lookupGroup = user.LookupGroup

// Group is a unix group, looked up when the config is read. The zero Group
// means "not set".
type Group struct {
	Name string
	GID  uint32
}

func (p *parser) control(t table, c *Control) {
	type roleGroup struct{ key, name string }
	seen := map[uint32]roleGroup{}
	for _, f := range []struct {
		key string
		g   *Group
	}{{"read_group", &c.Read}, {"operate_group", &c.Operate}, {"officer_group", &c.Officer}} {
		name, line, ok := p.str(t, f.key)
		if !ok {
			continue
		}
		if name == "" {
			p.addf(line, "%s is empty; name a unix group, or leave the key out (root only)", f.key)
			continue
		}
		g, err := lookupGroup(name)
		if err != nil {
			p.addf(line, "%s %q: no such unix group; create it (groupadd %s) or fix the name", f.key, name, name)
			continue
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			p.addf(line, "%s %q has the odd gid %q", f.key, name, g.Gid)
			continue
		}
		if gid == 0 {
			p.addf(line, "%s %q is gid 0 (root's group); name a group of its own", f.key, name)
			continue
		}
		// One group for two roles would merge their sockets' access;
		// say so instead of letting a typo grant more than meant. Roles
		// are granted by gid, so two names of one gid are one group.
		if other, dup := seen[uint32(gid)]; dup {
			if other.name == name {
				p.addf(line, "%s %q is also %s; give each role its own group", f.key, name, other.key)
			} else {
				p.addf(line, "%s %q is gid %d, as %s %q; give each role its own group", f.key, name, gid, other.key, other.name)
			}
			continue
		}
		seen[uint32(gid)] = roleGroup{f.key, name}
		*f.g = Group{Name: name, GID: uint32(gid)}
	}
}

// String is how messages show a group: its name, or "(none)".
func (g Group) String() string {
	if g.Name == "" {
		return "(none)"
	}
	return fmt.Sprintf("%s (gid %d)", g.Name, g.GID)
}
