package pkcs11key

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// maxPINLen bounds what is read from a PIN file.
const maxPINLen = 256

// CheckPINFile checks that path is a regular file that neither group nor
// others can read or write, owned by root or by us: what conf asks of a
// key file, since a PIN is as good as the key while the token is plugged
// in. Whoever owns the file can read it, and whoever can write it can
// put wrong PINs in it toward locking the token. It does not read the PIN.
func CheckPINFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("PIN file %s: %v", path, statReason(err))
	}
	return checkPINFileInfo(path, fi)
}

func checkPINFileInfo(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("PIN file %s is not a regular file", path)
	}
	perm := fi.Mode().Perm()
	if perm&0o044 != 0 {
		return fmt.Errorf("PIN file %s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	if perm&0o022 != 0 {
		return fmt.Errorf("PIN file %s is writable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("PIN file %s is owned by uid %d, neither root nor us (uid %d), who can read it; run: chown %d %s, or chown root", path, st.Uid, os.Geteuid(), os.Geteuid(), path)
	}
	return nil
}

// readPIN returns the PIN in path without its trailing newline. The caller
// zeroes the returned bytes.
func readPIN(path string) ([]byte, error) {
	if err := CheckPINFile(path); err != nil {
		return nil, errorf(KindPIN, nil, "%v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, errorf(KindPIN, nil, "PIN file %s: %v", path, statReason(err))
	}
	defer f.Close()
	// The file read, not the one stat'ed before: the path may have changed.
	fi, err := f.Stat()
	if err != nil {
		return nil, errorf(KindPIN, nil, "PIN file %s: %v", path, statReason(err))
	}
	if err := checkPINFileInfo(path, fi); err != nil {
		return nil, errorf(KindPIN, nil, "%v", err)
	}
	buf := make([]byte, maxPINLen+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		clear(buf)
		return nil, errorf(KindPIN, nil, "PIN file %s: %v", path, statReason(err))
	}
	if n > maxPINLen {
		clear(buf)
		return nil, errorf(KindPIN, nil, "PIN file %s is longer than %d bytes: it must hold only the PIN", path, maxPINLen)
	}
	pin := buf[:n]
	for len(pin) > 0 && (pin[len(pin)-1] == '\n' || pin[len(pin)-1] == '\r') {
		pin = pin[:len(pin)-1]
	}
	if len(pin) == 0 {
		clear(buf)
		return nil, errorf(KindPIN, nil, "PIN file %s is empty", path)
	}
	// Sent as the PIN, a second line (a comment, a note) would cost one of
	// the token's few tries and be reported as a wrong PIN.
	if bytes.ContainsAny(pin, "\r\n") {
		clear(buf)
		return nil, errorf(KindPIN, nil, "PIN file %s has more than one line: it must hold only the PIN", path)
	}
	return pin, nil
}

func statReason(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "no such file"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return strings.TrimSpace(err.Error())
}
