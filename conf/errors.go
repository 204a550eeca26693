package conf

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a config, located at a line of the file.
// Line is 1-based; problems that belong to no single key (a missing table)
// point at line 1 so every message keeps the FILE:LINE: form scripts expect.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Errors is every problem found in one run, sorted by line. Parse and Load
// return it as *Errors so callers can print one problem per line.
type Errors []Problem

// Error joins the problems as "FILE:LINE: msg" lines.
func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, p := range e {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

func (e Errors) sort() {
	sort.SliceStable(e, func(i, j int) bool { return e[i].Line < e[j].Line })
}
