package conf

import (
	"os"
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
	s = filepath.Clean(s)
	// At start the daemon claims whatever is at the path by renaming it
	// (statefile.Take), and moves what is not a state file aside: named
	// here, /var/lib/stunnel itself or a device would be moved away whole.
	if fi, err := os.Stat(s); err == nil && !fi.Mode().IsRegular() {
		what := "is not a regular file"
		if fi.IsDir() {
			what = "is a directory"
		}
		p.addf(line, "state_file %s %s; give a file of its own, e.g. %q", s, what, filepath.Join(DefaultStateDir, in.Name+".state"))
		return
	}
	in.StateFile = s
}
