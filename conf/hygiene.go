package conf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
)

// Key hygiene (issue 12, finding 6), the way ssh treats an identity file: a
// private key or PSK that another user can read or replace is refused,
// never used.

// checkInlineKey refuses an inline key (private_key, preshared_key) in a
// config file that group or others can read or write. Only for a config
// read from disk (Load); Parse of bytes has no file to look at.
func (p *parser) checkInlineKey(line int, key string) {
	if !p.fromDisk {
		return
	}
	fi, err := os.Stat(p.file)
	if err != nil {
		p.addf(line, "%s: cannot stat the config file to check who can read the key: %v", key, unwrapPathError(err))
		return
	}
	if perm := fi.Mode().Perm(); perm&0o066 != 0 {
		p.addf(line, "%s is inline in %s, which group or others can read or write (mode %04o); run: chmod 600 %s, or move the key to a %s_file with mode 600",
			key, p.file, perm, p.file, key)
		return
	}
	if err := ownerOK(p.file, fi); err != nil {
		p.addf(line, "%s is inline in %s, %v", key, p.file, err)
	}
}

// checkKeyFile refuses a key file (already open, fi its Stat) that group or
// others can read or write, that another non-root user owns, or that sits
// under a world-writable directory without the sticky bit (anyone could
// swap it). path is the file's path as opened.
func checkKeyFile(path string, fi os.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		return fmt.Errorf("%s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	} else if perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): anyone could replace the key; run: chmod 600 %s", path, perm, path)
	}
	if err := ownerOK(path, fi); err != nil {
		return fmt.Errorf("%s %v", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("cannot stat %s, a directory above the key file %s: %v", dir, path, unwrapPathError(err))
		}
		if di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%s is in %s, which anyone can write to (mode %04o, no sticky bit), so anyone could replace the key; move the key to a directory only root or you can write, e.g. /etc/stunnel", path, dir, di.Mode().Perm())
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// ownerOK accepts a file owned by root or by the user running us. path is
// the file as the caller names it, so the advice is a command to paste.
func ownerOK(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	euid := os.Geteuid()
	if st.Uid == 0 || int(st.Uid) == euid {
		return nil
	}
	fix := fmt.Sprintf("chown root %s", path)
	if euid != 0 {
		fix = fmt.Sprintf("chown %d %s, or %s", euid, path, fix)
	}
	return fmt.Errorf("is owned by uid %d, neither root nor us (uid %d), who could replace the key; run: %s", st.Uid, euid, fix)
}

// keyish matches runs that look like key material (base64 of 16 bytes or
// more, hex of 32 digits or more): never echoed in a syntax error.
var keyish = regexp.MustCompile(`[A-Za-z0-9+/=_-]{20,}`)

// TOMLSyntax is a TOML decode error as conf reports it: its line (1 when
// the parser gave none) and a message safe to print (syntaxMessage). For
// the commands that decode a config's file themselves (`show -c` reads
// only [interface] name), so they never print more than check does.
func TOMLSyntax(data []byte, err error) (line int, msg string) {
	line, msg = 1, err.Error()
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line, msg = syntaxLine(data, pe.Position), pe.Message
	}
	return line, syntaxMessage(data, line, strings.TrimPrefix(msg, "toml: "))
}

// syntaxLine is the line of a syntax error. The parser puts an unexpected
// newline (a table header left open, "[session") on the line after it, one
// past the end of the file when it is the last line; the newline's offset
// says which line it ends. The newline ends the span the parser reports:
// all of it for "[session", "]\n" for "[[peer]" (one bracket short). (Its
// offsets skip a byte order mark, as it does.)
func syntaxLine(data []byte, pos toml.Position) int {
	for _, bom := range []string{"\xff\xfe", "\xfe\xff", "\xef\xbb\xbf"} {
		if bytes.HasPrefix(data, []byte(bom)) {
			data = data[len(bom):]
			break
		}
	}
	if nl := pos.Start + max(pos.Len, 1) - 1; pos.Start >= 0 && nl < len(data) && data[nl] == '\n' {
		if l := bytes.Count(data[:nl], []byte("\n")) + 1; l < pos.Line {
			return l
		}
	}
	return pos.Line
}

// syntaxMessage is a TOML syntax error's message made safe to print: on a
// line that sets a key, or holds anything key-like, the parser's words,
// which quote the text it choked on, are replaced (the parser may quote
// only the start of a key, too short to look like one); anything key-like
// is masked in any case.
func syntaxMessage(data []byte, line int, msg string) string {
	// A key written twice: the message quotes the key's name, no value.
	// Shown when every part of that name is one of our keys, so a pasted
	// key used as a name is still never echoed.
	if m := duplicateKey.FindStringSubmatch(msg); m != nil && knownKeyPath(m[1]) {
		return msg
	}
	lines := strings.Split(string(data), "\n")
	if line >= 1 && line <= len(lines) {
		text := lines[line-1]
		if m := plainAssignment.FindStringSubmatch(text); m != nil && plainKeyName(m[1]) {
			// The name is ours and names no key material (rekey_after,
			// persistent_keepalive): only its value can hold a pasted key.
			text = m[2]
		}
		l := strings.ToLower(text)
		if strings.Contains(l, "key") || strings.Contains(l, "secret") || strings.Contains(l, "psk") {
			return "a line that holds key material is malformed (the parser's message is not shown, it would quote the key); check its quotes: key = \"base64...\""
		}
		if keyish.MatchString(text) {
			return "a line that holds something key-like is malformed (the parser's message is not shown, it could quote a key); check its quotes: name = \"value\""
		}
	}
	return keyish.ReplaceAllString(msg, "[hidden]")
}

var duplicateKey = regexp.MustCompile(`^Key '([^']*)' has already been defined\.$`)

// plainAssignment is a line `name = value` with a bare name.
var plainAssignment = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=(.*)$`)

// plainKeyName says a name is one of our keys whose value is no key
// material nor a key's file: "key" in rekey_after, or a name long enough to
// look key-like (persistent_keepalive), says nothing about the value.
func plainKeyName(name string) bool {
	if !knownKeyPath(name) {
		return false
	}
	l := strings.ReplaceAll(name, "rekey", "")
	return !strings.Contains(l, "key") && !strings.Contains(l, "secret") && !strings.Contains(l, "pin")
}

func knownKeyPath(path string) bool {
	for _, part := range strings.Split(path, ".") {
		known := false
		for _, keys := range [][]string{topKeys, interfaceKeys, sessionKeys, peerKeys, controlKeys, metricsKeys, ticketsKeys, directoryKeys} {
			known = known || contains(keys, part)
		}
		if !known {
			return false
		}
	}
	return true
}
