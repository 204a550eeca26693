package conf

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The keys each table may hold. Anything else is an error, never ignored.
var (
	topKeys       = []string{"interface", "session", "peer", "control", "metrics", "tickets", "directory"}
	interfaceKeys = []string{"name", "peer_id", "private_key", "private_key_file", "listen_port", "address", "mtu", "log_level", "state_file"}
	sessionKeys   = []string{"rekey_after", "reject_after", "rekey_after_messages", "replay_window", "keepalive", "cipher"}
	peerKeys      = []string{"id", "public_key", "preshared_key", "preshared_key_file", "endpoint", "allowed_ips", "persistent_keepalive", "failover_after"}
)

// parser collects problems while reading one file. Not safe for concurrent use.
type parser struct {
	file  string
	dir   string         // key-file paths are relative to this
	lines map[string]int // keyPath -> line
	probs Errors

	fromDisk bool // read by Load: the file's mode and owner can be checked

	// keyFiles are the key files read, by the key that named them, and
	// stateLine and cacheLine the lines of an explicit state_file and
	// [directory] cache_file: stateFileClash, cacheFileClash.
	keyFiles  []namedFile
	stateLine int
	cacheLine int
}

// table is one TOML table with where it sits, for messages.
type table struct {
	m    map[string]any
	path string // keyPath of the table, e.g. "peer.2"
	name string // as the user knows it, e.g. "[[peer]] #3"
	line int    // header line, or 1 when the table is missing
}

func (p *parser) addf(line int, format string, args ...any) {
	if line < 1 {
		line = 1
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Parse validates data, the contents of the config file at path. Key files
// are read from disk, relative to path's directory. On failure the error is
// *Errors with every problem found.
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, data, false)
}

func parse(path string, data []byte, fromDisk bool) (*Config, error) {
	p := &parser{file: path, dir: filepath.Dir(path), fromDisk: fromDisk}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		line, msg := TOMLSyntax(data, err)
		p.addf(line, "TOML syntax: %s", msg)
		return nil, &p.probs
	}
	p.lines = locateKeys(data, md)
	c := p.config(raw)
	if len(p.probs) > 0 {
		c.Interface.PrivateKey.Zero()
		for i := range c.Peers {
			c.Peers[i].PresharedKey.Zero()
		}
		p.probs.sort()
		return nil, &p.probs
	}
	return c, nil
}

func (p *parser) config(raw map[string]any) *Config {
	c := &Config{Path: p.file}
	root := table{m: raw, name: "the top level", line: 1}
	p.unknownKeys(root, topKeys)

	if t, ok := p.subTable(root, "interface"); ok {
		p.iface(t, &c.Interface)
	} else {
		p.addf(1, "missing [interface] table: this host's name, peer_id, private key and address")
	}
	st, _ := p.subTable(root, "session")
	p.session(st, &c.Session)
	tt, _ := p.subTable(root, "tickets")
	p.tickets(tt, &c.Tickets)

	if t, ok := p.subTable(root, "control"); ok {
		p.control(t, &c.Control)
	}
	if t, ok := p.subTable(root, "metrics"); ok {
		p.metrics(t, &c.Metrics)
	}
	if t, ok := p.subTable(root, "directory"); ok {
		c.Directory = p.directory(t, &c.Interface)
	}
	p.ticketRingNeedsDirectory(c)
	for _, t := range p.peerTables(root) {
		c.Peers = append(c.Peers, p.peer(t))
	}
	p.stateFileClash(c)
	p.cacheFileClash(c)
	p.crossCheck(c)
	return c
}

// subTable returns root[key] as a table; absent gives an empty table.
func (p *parser) subTable(root table, key string) (table, bool) {
	t := table{m: map[string]any{}, path: key, name: "[" + key + "]", line: 1}
	v, ok := root.m[key]
	if !ok {
		return t, false
	}
	t.line = p.lines[key]
	m, isMap := v.(map[string]any)
	if !isMap {
		p.addf(t.line, "%s must be a table written [%s], not %s", key, key, typeName(v))
		return t, false
	}
	t.m = m
	p.unknownKeys(t, allowedFor(key))
	return t, true
}

func allowedFor(table string) []string {
	switch table {
	case "interface":
		return interfaceKeys
	case "session":
		return sessionKeys
	case "control":
		return controlKeys
	case "metrics":
		return metricsKeys
	case "tickets":
		return ticketsKeys
	case "directory":
		return directoryKeys
	}
	return peerKeys
}

func (p *parser) peerTables(root table) []table {
	v, ok := root.m["peer"]
	if !ok {
		return nil
	}
	list, isList := v.([]map[string]any)
	if !isList {
		p.addf(p.lines["peer"], "peer must be an array of tables, each written [[peer]], not %s", typeName(v))
		return nil
	}
	var out []table
	for i, m := range list {
		path := keyPath("peer", fmt.Sprint(i))
		line, ok := p.lines[path]
		if !ok {
			line = p.lines["peer"]
		}
		t := table{m: m, path: path, name: fmt.Sprintf("[[peer]] #%d", i+1), line: line}
		p.unknownKeys(t, peerKeys)
		out = append(out, t)
	}
	return out
}

// keyLine is the line of key in t, or t's header line.
func (p *parser) keyLine(t table, key string) int {
	path := key
	if t.path != "" {
		path = keyPath(t.path, key)
	}
	if l, ok := p.lines[path]; ok {
		return l
	}
	return t.line
}

func (p *parser) unknownKeys(t table, allowed []string) {
	var unknown []string
	for k := range t.m {
		if !contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		hint := ""
		if s := suggest(k, allowed); s != "" {
			hint = fmt.Sprintf("; did you mean %q?", s)
		}
		p.addf(p.keyLine(t, k), "unknown key %q in %s (allowed: %s)%s", k, t.name, strings.Join(allowed, ", "), hint)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the allowed key closest to a misspelt one, if close enough.
func suggest(k string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(k, a); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return "a date/time"
}

// str reads an optional string key. ok is false when absent or wrong.
func (p *parser) str(t table, key string) (s string, line int, ok bool) {
	line = p.keyLine(t, key)
	v, present := t.m[key]
	if !present {
		return "", line, false
	}
	s, isStr := v.(string)
	if !isStr {
		p.addf(line, "%s must be a string, not %s", key, typeName(v))
		return "", line, false
	}
	return s, line, true
}

// int reads an optional integer key.
func (p *parser) int(t table, key string) (n int64, line int, ok bool) {
	line = p.keyLine(t, key)
	v, present := t.m[key]
	if !present {
		return 0, line, false
	}
	n, isInt := v.(int64)
	if !isInt {
		p.addf(line, "%s must be an integer, not %s", key, typeName(v))
		return 0, line, false
	}
	return n, line, true
}

// strList reads an optional array of strings.
func (p *parser) strList(t table, key, example string) (list []string, line int, ok bool) {
	line = p.keyLine(t, key)
	v, present := t.m[key]
	if !present {
		return nil, line, false
	}
	arr, isArr := v.([]any)
	if !isArr {
		p.addf(line, "%s must be an array of strings such as [%q], not %s", key, example, typeName(v))
		return nil, line, false
	}
	ok = true
	for i, e := range arr {
		s, isStr := e.(string)
		if !isStr {
			p.addf(line, "%s[%d] must be a string such as %q, not %s", key, i, example, typeName(e))
			ok = false
			continue
		}
		list = append(list, s)
	}
	return list, line, ok
}

// duration reads an optional non-negative Go duration string.
func (p *parser) duration(t table, key string) (d time.Duration, line int, ok bool) {
	line = p.keyLine(t, key)
	v, present := t.m[key]
	if !present {
		return 0, line, false
	}
	s, isStr := v.(string)
	if !isStr {
		p.addf(line, "%s must be a duration string such as \"25s\" or \"2m\", not %s", key, typeName(v))
		return 0, line, false
	}
	d, err := time.ParseDuration(s)
	if err != nil && durationSyntax.MatchString(s) {
		// Written as a duration, but past what one can hold: saying it
		// is no duration would send the reader looking for a typo.
		p.addf(line, "%s %q is too long: a duration is at most %s (about 292 years)", key, s, time.Duration(1<<63-1).Truncate(time.Hour))
		return 0, line, false
	}
	if err != nil {
		p.addf(line, "%s %q is not a duration; write e.g. \"25s\" or \"2m\"", key, s)
		return 0, line, false
	}
	if d < 0 {
		p.addf(line, "%s %q must not be negative", key, s)
		return 0, line, false
	}
	return d, line, true
}

// durationSyntax is the form time.ParseDuration reads; a string of this
// form that it refuses is out of range.
var durationSyntax = regexp.MustCompile(`^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)
