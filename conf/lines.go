package conf

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The toml package records the position of every key but does not export it,
// so we find the lines ourselves. toml.MetaData.Keys lists table headers and
// keys in the order they are written, and TOML forbids writing a key twice in
// one table, so a forward scan that matches each key after the previous one
// (and, for a key, before the next table header) finds the line it is on.
// A key the scan cannot find (one inside an inline table) gets the line of the
// key before it, which is the line that holds the inline table.

// keyPath names a key the way the validator asks for it: tables of an array
// get their index, e.g. "peer.1.endpoint" for the second [[peer]].
func keyPath(parts ...string) string { return strings.Join(parts, ".") }

// locateKeys returns the line of every key and table header in src.
func locateKeys(src []byte, md toml.MetaData) map[string]int {
	// The TOML parser skips a UTF-8 byte order mark; so must the scan, or a
	// header on line 1 after one is not seen as a header.
	lines := bytes.Split(bytes.TrimPrefix(src, []byte("\ufeff")), []byte("\n"))
	out := make(map[string]int)
	arrayIndex := make(map[string]int) // array-of-tables path -> index of the current table
	curLine := 0                       // 0-based line of the last key found
	curCol := 0
	var context toml.Key // the last table header

	// indexed turns a key into its keyPath, inserting array-table indexes.
	indexed := func(k toml.Key) string {
		var parts []string
		for i := range k {
			parts = append(parts, k[i])
			if n, ok := arrayIndex[keyPath(k[:i+1]...)]; ok && i < len(k)-1 {
				parts = append(parts, strconv.Itoa(n))
			}
		}
		return keyPath(parts...)
	}

	for _, k := range md.Keys() {
		typ := md.Type(k...)
		isArrayTable := typ == "ArrayHash"
		if typ != "Hash" && !isArrayTable {
			// A value key; only tables can have headers.
		} else if l, ok := findHeader(lines, curLine, k); ok {
			p := indexed(k)
			if isArrayTable {
				n, seen := arrayIndex[keyPath(k...)]
				if seen {
					n++
				}
				arrayIndex[keyPath(k...)] = n
				if !seen { // the array's own line: its first header (a misspelt [[peers]] is reported there)
					out[p] = l + 1
				}
				p = keyPath(p, strconv.Itoa(n))
			}
			context = k
			curLine, curCol = l, 0
			out[p] = curLine + 1
			continue
		}
		if len(k) > len(context) && hasPrefix(k, context) {
			if l, c, ok := findKey(lines, curLine, curCol, k[len(context)]); ok {
				curLine, curCol = l, c
			}
		}
		// A dotted key (a.b.c = 1) makes its tables a and a.b implicitly,
		// and Keys lists no entry for them: they are on the key's line,
		// where an unknown or mistyped one is to be reported.
		first := len(k)
		if len(k) > len(context) && hasPrefix(k, context) {
			first = len(context) + 1
		}
		for i := first; i <= len(k); i++ {
			if p := indexed(k[:i]); out[p] == 0 {
				out[p] = curLine + 1
			}
		}
	}
	return out
}

func hasPrefix(k, prefix toml.Key) bool {
	for i := range prefix {
		if k[i] != prefix[i] {
			return false
		}
	}
	return true
}

// findHeader finds the [k] or [[k]] line at or after line from.
func findHeader(lines [][]byte, from int, k toml.Key) (int, bool) {
	want := keyPath(k...)
	for i := from; i < len(lines); i++ {
		if name, ok := headerName(lines[i]); ok && name == want {
			return i, true
		}
	}
	return 0, false
}

// headerName returns "a.b" for a line "[a.b]" or "[[ a . "b" ]]  # comment".
func headerName(line []byte) (string, bool) {
	line = bytes.TrimSpace(line) // called for every line: no string copy of the others
	if len(line) == 0 || line[0] != '[' {
		return "", false
	}
	s := strings.TrimLeft(string(line), "[")
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return "", false
	}
	return headerSpace.Replace(s[:end]), true
}

var headerSpace = strings.NewReplacer(" ", "", "\t", "", `"`, "", "'", "")

// findKey finds `name =` (or `name.` of a dotted key, or the quoted name) at
// the start of a line or after '{' or ',', from (line, col) up to the next
// table header. It returns the line and the column just past the name.
func findKey(lines [][]byte, line, col int, name string) (int, int, bool) {
	forms := []string{name, `"` + name + `"`, "'" + name + "'"}
	for i := line; i < len(lines); i++ {
		l := string(lines[i])
		start := 0
		if i == line {
			start = min(col, len(l))
		} else if _, hdr := headerName(lines[i]); hdr {
			return 0, 0, false
		}
		for j := start; j < len(l); j++ {
			for _, f := range forms {
				if strings.HasPrefix(l[j:], f) && keyStartsAt(l, j) && keyEndsAt(l, j+len(f)) {
					return i, j + len(f), true
				}
			}
		}
	}
	return 0, 0, false
}

func keyStartsAt(l string, j int) bool {
	s := strings.TrimRight(l[:j], " \t")
	return s == "" || strings.HasSuffix(s, "{") || strings.HasSuffix(s, ",")
}

func keyEndsAt(l string, j int) bool {
	s := strings.TrimLeft(l[j:], " \t")
	return strings.HasPrefix(s, "=") || strings.HasPrefix(s, ".")
}
