package tickets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// GroupSecretSize is the length of a gateway group's secret.
const GroupSecretSize = 32

// GroupSecret seals the ticket keys a gateway group keeps in etcd
// ([tickets] ring = "etcd"): every gateway of the group reads the same one
// from its group_secret_file. It never leaves the host. Zero it when done.
type GroupSecret struct {
	b [GroupSecretSize]byte
}

// NewGroupSecret makes a random group secret (rng nil: crypto/rand).
func NewGroupSecret(rng io.Reader) (*GroupSecret, error) {
	if rng == nil {
		rng = rand.Reader
	}
	g := &GroupSecret{}
	if _, err := io.ReadFull(rng, g.b[:]); err != nil {
		return nil, fmt.Errorf("group secret: reading randomness: %w", err)
	}
	if allZero(g.b[:]) {
		return nil, errors.New("group secret: randomness returned zeros")
	}
	return g, nil
}

// Format prints a placeholder whatever the verb: fmt would print the
// unexported secret byte by byte.
func (g GroupSecret) Format(f fmt.State, _ rune) { io.WriteString(f, "(group secret)") }

// Zero erases the secret.
func (g *GroupSecret) Zero() {
	if g != nil {
		clear(g.b[:])
	}
}

// ParseGroupSecret reads a group secret file's contents: 32 bytes as 64 hex
// digits or in standard base64, surrounded by white space at most. path is
// for messages, which never contain the secret. It works on data itself (a
// string of it could not be cleared) and clears what it decodes into; data
// stays the caller's to clear.
func ParseGroupSecret(path string, data []byte) (*GroupSecret, error) {
	s := bytes.TrimSpace(data)
	g := &GroupSecret{}
	var n int
	var err error
	if len(s) == 2*GroupSecretSize {
		n, err = hex.Decode(g.b[:], s)
	} else {
		raw := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err = base64.StdEncoding.Decode(raw, s)
		if err == nil && n == GroupSecretSize {
			copy(g.b[:], raw)
		}
		clear(raw)
	}
	if err != nil || n != GroupSecretSize {
		g.Zero()
		return nil, fmt.Errorf("group secret file %s does not hold %d bytes in hex (64 digits) or base64; make one with: stunnel tickets group-secret -o FILE", path, GroupSecretSize)
	}
	if allZero(g.b[:]) {
		return nil, fmt.Errorf("group secret file %s holds an all-zero secret; make one with: stunnel tickets group-secret -o FILE", path)
	}
	return g, nil
}

// ReadGroupSecretFile reads and checks a group secret file: a regular file
// of ours (or root's), no group or other permission bits, 32 bytes.
func ReadGroupSecretFile(path string) (*GroupSecret, error) {
	data, err := readSecretFile("group secret file", path, 1024)
	defer clear(data)
	if err != nil {
		return nil, err
	}
	return ParseGroupSecret(path, data)
}

// CheckGroupSecretFileMode refuses a group secret file that is not a
// regular file, that group or others may access, or that another user owns.
func CheckGroupSecretFileMode(path string, fi os.FileInfo) error {
	return checkSecretFileMode("group secret file", path, fi)
}

// WriteGroupSecretFile writes g to a new file at path (mode 0600, hex, one
// line); an existing file is never overwritten. The file and then its
// directory are fsynced, as WriteKeyFile does: a crash must not lose the
// new file's name once this returns.
func WriteGroupSecretFile(path string, g *GroupSecret) error {
	line := make([]byte, 2*GroupSecretSize+1)
	defer clear(line)
	hex.Encode(line, g.b[:])
	line[len(line)-1] = '\n'
	if err := writeNewSecretFile(path, line); err != nil {
		return fmt.Errorf("group secret file %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("group secret file %s written, but a crash may lose it: %w", path, err)
	}
	return nil
}
