package pkcs11key

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxPINLen bounds what is read from a PIN file.
const maxPINLen = 256

// CheckPINFile checks that path is a regular file that neither group nor
// others can read (a PIN is as good as the key while the token is
// plugged in). It does not read the PIN.
func CheckPINFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("PIN file %s: %v", path, statReason(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("PIN file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		return fmt.Errorf("PIN file %s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
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
