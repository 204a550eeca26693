package tickets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"stunnel/internal/fsdir"
)

// Key file format (text, UTF-8). Blank lines and lines starting with # are
// ignored; every other line is one key, five fields separated by spaces:
//
//	NAME SECRET CREATED ENCRYPT_DECRYPT DECRYPT_ONLY
//	3f0c...(32 hex digits) base64-of-32-bytes 2026-11-30T18:00:00Z 2h0m0s 13h0m0s
//
// NAME is 16 bytes in hex, SECRET 32 bytes in standard base64, CREATED an RFC
// 3339 time (the start of the encrypt-decrypt life; a future time makes a
// pending key, so a fleet can receive it before anyone seals with it), the two
// lifetimes Go durations. The file must be a regular file owned by the user
// running stunnel (or root) with no group or other permission bits (0600).
const keyFileHeader = "# stunnel ticket keys, format 1: NAME(hex) SECRET(base64) CREATED(RFC3339) ENCRYPT_DECRYPT DECRYPT_ONLY\n"

// maxKeyFile bounds what we read: about 1000 keys.
const maxKeyFile = 128 << 10

// ReadKeyFile reads and checks a key file. Errors are FILE:LINE: message and
// never contain a secret. A file that lists no key is valid here (`stunnel
// tickets add` may fill it); a ring's key file is read with ReadRingKeyFile.
func ReadKeyFile(path string) ([]Key, error) {
	data, err := readSecretFile("ticket key file", path, maxKeyFile)
	defer clear(data)
	if err != nil {
		return nil, err
	}
	return ParseKeyFile(path, data)
}

// ReadRingKeyFile is ReadKeyFile for a ring's [tickets] key_file, as
// `stunnel check`, the start and every reload read it: a file that lists no
// key is refused too. Such a file is useless to a ring (no ticket could be
// sealed or opened), and it is what a reload finds when it reads the file
// while a copy (cp truncates first) is being written over it: accepted, it
// would erase every key of the running ring.
func ReadRingKeyFile(path string) ([]Key, error) {
	keys, err := ReadKeyFile(path)
	if err == nil && len(keys) == 0 {
		err = fmt.Errorf("ticket key file %s lists no key (empty, or read while being copied?); add one with: stunnel tickets add %s", path, path)
	}
	return keys, err
}

// CheckKeyFileMode refuses a key file that is not a regular file, that group
// or others may access, or that another user owns.
func CheckKeyFileMode(path string, fi os.FileInfo) error {
	return checkSecretFileMode("ticket key file", path, fi)
}

// readSecretFile reads a file of secrets (what names it in messages) of
// at most limit bytes, after checkSecretFileMode on the open file. The
// caller clears what it returns.
func readSecretFile(what, path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkSecretFileMode(what, path, fi); err != nil {
		return nil, err
	}
	return readSecret(f, what, path, limit)
}

// readSecret reads r, at most limit bytes, into one array made up front
// for the whole limit. io.ReadAll grows its buffer instead, and every array
// it outgrows keeps the secrets read so far, uncleared. On error it clears
// what it read; else the caller clears what it returns.
func readSecret(r io.Reader, what, path string, limit int64) ([]byte, error) {
	buf := make([]byte, limit+1)
	n, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		clear(buf)
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if int64(n) > limit {
		clear(buf)
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, limit)
	}
	return buf[:n], nil
}

// checkSecretFileMode refuses a file of secrets (what names it in
// messages) that is not a regular file, that group or others may access,
// or that another user than us or root owns.
func checkSecretFileMode(what, path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s has mode %04o, group or others may access it; run: chmod 600 %s", what, path, perm, path)
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); sys.Uid != uint32(uid) && sys.Uid != 0 {
			return fmt.Errorf("%s %s is owned by uid %d, not by us (uid %d) or root; run: chown %d %s", what, path, sys.Uid, uid, uid, path)
		}
	}
	return nil
}

// ParseKeyFile parses key file contents; path is for messages.
//
// It copies no secret but into the returned keys: lines and fields are
// sub-slices of data (no bufio.Scanner buffer, no string of a line), the
// secret is decoded into a local array it clears, and the keys are parsed
// in place in one array sized for every key line up front, so no append
// moves them and leaves a copy behind. data stays the caller's to clear.
func ParseKeyFile(path string, data []byte) ([]Key, error) {
	n := 0
	for l := range bytes.Lines(data) {
		if s := bytes.TrimSpace(l); len(s) > 0 && s[0] != '#' {
			n++
		}
	}
	keys := make([]Key, 0, n)
	var errs []error
	line := 0
	for l := range bytes.Lines(data) {
		line++
		s := bytes.TrimSpace(l)
		if len(s) == 0 || s[0] == '#' {
			continue
		}
		keys = keys[:len(keys)+1]
		k := &keys[len(keys)-1]
		err := parseKeyLine(s, k)
		if err == nil {
			for _, o := range keys[:len(keys)-1] {
				if o.Name == k.Name {
					err = fmt.Errorf("key %s is listed twice", k.NameHex())
				}
			}
		}
		if err != nil {
			*k = Key{}
			keys = keys[:len(keys)-1]
			errs = append(errs, fmt.Errorf("%s:%d: %v", path, line, err))
		}
	}
	// A file cut short (read while it is being copied or written) mostly
	// fails a field above, but not when the cut falls inside the last
	// lifetime: "1h30m0s" cut to "1h" still parses, as a shorter life.
	// Every line of a whole file ends in a newline (MarshalKeyFile writes
	// them so, as editors do), so a last key line without one is refused.
	// (A cut line that already failed above is not reported twice.)
	if last := bytes.TrimSpace(data[bytes.LastIndexByte(data, '\n')+1:]); len(errs) == 0 && len(last) > 0 && last[0] != '#' {
		errs = append(errs, fmt.Errorf("%s:%d: the last key line does not end with a newline: is the file still being written? End it with one", path, bytes.Count(data, []byte("\n"))+1))
	}
	if len(errs) > 0 {
		for i := range keys {
			keys[i].Erase()
		}
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// parseKeyLine parses one key line into k; on error the caller clears k.
// Its errors name the bad field by number and name and say why it is bad
// (its length, a character class), but never quote a field: with the
// fields out of order (SECRET and NAME swapped, say), any field may hold
// the secret, and these errors are printed by `stunnel check` and logged at
// start-up and on reload. Fields 3 to 5 become strings (time.Parse and
// time.ParseDuration take no bytes), which nobody can clear; they are
// reached only once field 2 decoded as a secret, so a secret in one of them
// would be a line with two.
func parseKeyLine(s []byte, k *Key) error {
	f := bytes.Fields(s)
	if len(f) != 5 {
		return fmt.Errorf("want 5 fields NAME SECRET CREATED ENCRYPT_DECRYPT DECRYPT_ONLY, got %d", len(f))
	}
	// The length first: hex.Decode writes len/2 bytes and would overrun Name.
	if len(f[0]) != 2*NameSize {
		return fmt.Errorf("field 1 (NAME) has %d characters, want %d hex digits%s", len(f[0]), 2*NameSize, swapHint(f))
	}
	if n, err := hex.Decode(k.Name[:], f[0]); err != nil || n != NameSize {
		return fmt.Errorf("field 1 (NAME) has a character that is not a hex digit, want %d hex digits", 2*NameSize)
	}
	if !decodeSecret(&k.secret, f[1]) {
		return fmt.Errorf("field 2 (SECRET) of key %s is not standard base64 of %d bytes (%d characters)", k.NameHex(), SecretSize, base64.StdEncoding.EncodedLen(SecretSize))
	}
	if k.IsErased() {
		return fmt.Errorf("field 2 (SECRET) of key %s is all zero", k.NameHex())
	}
	var err error
	if k.Created, err = time.Parse(time.RFC3339, string(f[2])); err != nil {
		return fmt.Errorf("field 3 (CREATED) of key %s is not an RFC 3339 time such as 2026-11-30T18:00:00Z (%d characters)", k.NameHex(), len(f[2]))
	}
	for i, l := range []struct {
		name string
		d    *time.Duration
	}{{"ENCRYPT_DECRYPT", &k.EncryptDecrypt}, {"DECRYPT_ONLY", &k.DecryptOnly}} {
		if *l.d, err = time.ParseDuration(string(f[3+i])); err != nil || *l.d <= 0 {
			return fmt.Errorf("field %d (%s) of key %s is not a positive duration such as 2h (%d characters)", 4+i, l.name, k.NameHex(), len(f[3+i]))
		}
	}
	return nil
}

// decodeSecret decodes standard base64 of exactly SecretSize bytes into
// dst, through a local array it clears (base64.DecodeString would return a
// new slice for the caller to clear, and take a string, which nobody can).
func decodeSecret(dst *[SecretSize]byte, src []byte) bool {
	const encLen = (SecretSize + 2) / 3 * 4
	if len(src) != encLen {
		return false
	}
	var buf [encLen / 4 * 3]byte
	defer clear(buf[:])
	n, err := base64.StdEncoding.Decode(buf[:], src)
	if err != nil || n != SecretSize {
		return false
	}
	copy(dst[:], buf[:n])
	return true
}

// swapHint is a hint for a bad NAME field when the line reads as if NAME and
// SECRET were swapped (field 1 as long as a secret, field 2 as long as a
// name). It looks at lengths only.
func swapHint(f [][]byte) string {
	if len(f[0]) == base64.StdEncoding.EncodedLen(SecretSize) && len(f[1]) == 2*NameSize {
		return "; are NAME and SECRET swapped?"
	}
	return ""
}

// MarshalKeyFile writes keys in the key file format (with their secrets).
// The output is written into one array of its exact size, the secrets
// encoded straight into it: no growing buffer, fmt buffer or string is left
// holding one. The caller clears it.
func MarshalKeyFile(keys []Key) []byte {
	// Each line but its NAME and SECRET: nothing secret.
	tails := make([]string, len(keys))
	size := len(keyFileHeader)
	for i := range keys {
		k := &keys[i]
		tails[i] = " " + k.Created.UTC().Format(time.RFC3339) + " " + k.EncryptDecrypt.String() + " " + k.DecryptOnly.String() + "\n"
		size += 2*NameSize + 1 + base64.StdEncoding.EncodedLen(SecretSize) + len(tails[i])
	}
	b := make([]byte, 0, size)
	b = append(b, keyFileHeader...)
	for i := range keys {
		b = hex.AppendEncode(b, keys[i].Name[:])
		b = append(b, ' ')
		b = base64.StdEncoding.AppendEncode(b, keys[i].secret[:])
		b = append(b, tails[i]...)
	}
	return b
}

// WriteKeyFile writes keys to path atomically (a 0600 temporary file renamed
// over it), so a gateway re-reading on SIGHUP never sees half a file, and
// durably: the file is fsynced before the rename and its directory after
// (fsdir.WriteFile, as statefile.Save). Without the directory's fsync a
// crash could undo the rename: the old file back, or none where there was
// none. If only that last fsync fails the error says the new file is
// written, so an operator knows it is in place.
func WriteKeyFile(path string, keys []Key) error {
	data := MarshalKeyFile(keys)
	defer clear(data)
	if err := fsdir.WriteFileSyncDir(path, data, syncDir); err != nil {
		if errors.Is(err, fsdir.ErrDirSync) {
			return fmt.Errorf("ticket key file %s written, but a crash may lose it: %w", path, err)
		}
		return fmt.Errorf("ticket key file %s: %w", path, err)
	}
	return nil
}

// syncDir is fsdir.Sync; a variable, so tests see when it runs (and make it
// fail) in WriteKeyFile, through fsdir.WriteFileSyncDir, and in
// WriteGroupSecretFile. Only tests set it, before the calls they check.
var syncDir = fsdir.Sync

// writeNewSecretFile writes data to a new file at path (mode 0600, never an
// existing one), synced; on error what was created is removed. Not
// fsdir.WriteFile: the group secret file must not replace one that exists.
func writeNewSecretFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// LoadFile switches the ring to the key file at path and replaces its keys
// with the file's (call again on SIGHUP). Keys no longer listed are erased;
// keys already past their decrypt-only life are skipped. A file that does
// not parse, or lists no key (ReadRingKeyFile), is refused: on error the
// ring is unchanged.
func (r *Ring) LoadFile(path string) error {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed { // SetExternalKeys would take nothing: read no secret
		return ErrRingClosed
	}
	keys, err := ReadRingKeyFile(path)
	if err != nil {
		return err
	}
	r.SetExternalKeys(keys)
	for i := range keys {
		keys[i].Erase()
	}
	return nil
}
