package conf

import (
	"path/filepath"
	"strings"
)

// DefaultStateDir holds each instance's state file, NAME.state; the unit's
// StateDirectory=stunnel creates it.
const DefaultStateDir = "/var/lib/stunnel"

// stateFile reads [interface] state_file: where the sealed sessions are
// saved at a clean stop and restored once at the next start. Default
// DefaultStateDir/NAME.state; "" turns saving off (every restart handshakes
// anew); a relative path is relative to the config file, like key files.
func (p *parser) stateFile(t table, in *Interface) {
	in.StateFile = filepath.Join(DefaultStateDir, in.Name+".state")
	s, line, ok := p.str(t, "state_file")
	if !ok {
		return
	}
	switch {
	case s == "":
		in.StateFile = ""
		return
	case strings.HasSuffix(s, "/") || filepath.Base(s) == "." || filepath.Base(s) == "..":
		p.addf(line, "state_file %q names a directory; give a file, e.g. %q", s, filepath.Join(DefaultStateDir, in.Name+".state"))
		return
	case strings.ContainsRune(s, 0):
		p.addf(line, "state_file %q contains a NUL byte", s)
		return
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	in.StateFile = filepath.Clean(s)
}
