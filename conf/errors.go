package conf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"stunnel/internal/keytext"
)

// Problem is one thing wrong with a config, located at a line of the file.
// Line is 1-based; problems that belong to no single key (a missing table)
// point at line 1 so every message keeps the FILE:LINE: form scripts expect.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s", oneLine(p.File), p.Line, HideKeys(oneLine(p.Msg)))
}

// HideKeys replaces key material in a message (keytext.Hide: base64 of 32
// bytes, 64 hex digits). Messages quote values as written (a name, an
// address, an endpoint, an unknown key's name), so a key pasted into the
// wrong place or as a key name would otherwise reach the terminal and the
// journal, which the key checks exist to prevent.
func HideKeys(s string) string { return keytext.Hide(s) }

// oneLine escapes what is not printable (a newline, a carriage return, a
// tab...) as Go would quote it: messages quote values as written, a file
// name written "a\nb" included, and each problem must stay one line that
// no value can end or make look like another FILE:LINE.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

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
