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
	s = filepath.Clean(p.path(s))
	p.stateLine = line
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

// namedFile is a file the config names, by the key (as messages say it)
// that names it.
type namedFile struct{ key, path string }

// path is a file key's value as the daemon opens it: relative to the
// config file's directory.
func (p *parser) path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(p.dir, name)
}

// stateFileClash refuses a state_file that is another file of the config:
// at start the daemon moves what is at the path aside (it holds no state)
// and at a clean stop writes the sealed state there, so the key, the
// config itself, a ticket key file... would be gone for the next start.
func (p *parser) stateFileClash(c *Config) {
	state := c.Interface.StateFile
	if state == "" || p.stateLine == 0 {
		return
	}
	others := p.configFiles(c)
	if d := c.Directory; d != nil {
		others = append(others, namedFile{"[directory] cache_file", d.CacheFile})
	}
	if o, ok := clash(state, others); ok {
		p.addf(p.stateLine, "state_file %s is also %s: the daemon moves its state file aside at start and writes over it at stop; give the state a file of its own, e.g. %q",
			state, o.key, filepath.Join(DefaultStateDir, c.Interface.Name+".state"))
	}
}

// cacheFileClash refuses a [directory] cache_file that is another file of
// the config: the daemon writes the sealed directory over it after every
// sync with etcd, so the first start took a key, the config itself, a
// ticket key file... away from the next one. The state file too, also at
// its default path (an explicit one is stateFileClash's to name).
func (p *parser) cacheFileClash(c *Config) {
	d := c.Directory
	if d == nil || d.CacheFile == "" || p.cacheLine == 0 {
		return
	}
	others := p.configFiles(c)
	if c.Interface.StateFile != "" && p.stateLine == 0 {
		others = append(others, namedFile{"state_file", c.Interface.StateFile})
	}
	if o, ok := clash(d.CacheFile, others); ok {
		p.addf(p.cacheLine, "cache_file %s is also %s: the daemon writes the sealed directory over it after every sync with etcd; give the cache a file of its own, e.g. %q",
			d.CacheFile, o.key, filepath.Join(DefaultDirectoryCacheDir, c.Interface.Name+".directory"))
	}
}

// configFiles is every file the config names that the daemon reads, by
// the key that names it: what neither state_file nor cache_file may be.
func (p *parser) configFiles(c *Config) []namedFile {
	others := append([]namedFile{{"the config file", p.file}}, p.keyFiles...)
	if t := c.Tickets; t.KeyFile != "" {
		others = append(others, namedFile{"[tickets] key_file", t.KeyFile})
	}
	if t := c.Tickets; t.GroupSecretFile != "" {
		others = append(others, namedFile{"[tickets] group_secret_file", t.GroupSecretFile})
	}
	if d := c.Directory; d != nil {
		others = append(others, namedFile{"[directory] ca_file", d.CAFile}, namedFile{"[directory] cert_file", d.CertFile},
			namedFile{"[directory] key_file", d.KeyFile})
	}
	if k := c.Interface.PKCS11; k != nil && k.PinFile != "" {
		others = append(others, namedFile{"the PKCS#11 PIN file", k.PinFile})
	}
	return others
}

// clash is the first of others that is path.
func clash(path string, others []namedFile) (namedFile, bool) {
	for _, o := range others {
		if o.path != "" && SameFile(path, o.path) {
			return o, true
		}
	}
	return namedFile{}, false
}

// SameFile reports whether paths a and b name one file: the same path once
// absolute and clean (whether or not it exists: the file may be out of
// sight, in another mount namespace), or the same file on disk (a link to
// it, another path to it).
func SameFile(a, b string) bool {
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	if errA == nil && errB == nil && aa == ab {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
