package conf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// readKeyFile returns the trimmed contents of a key file, refusing files that
// group or others can read or replace (checkKeyFile): a leaked private key
// lets anyone impersonate this host. Errors name the file and never its
// contents. path is as the daemon opens it (parser.path).
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot open %s: %v", path, unwrapPathError(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("cannot stat %s: %v", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkKeyFile(path, fi); err != nil {
		return "", err
	}
	buf := make([]byte, maxKeyFileSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	defer clear(buf)
	if n > maxKeyFileSize {
		return "", fmt.Errorf("%s is too large to be a key file", path)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}
