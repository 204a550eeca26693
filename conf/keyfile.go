package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// readKeyFile returns the trimmed contents of a key file, refusing files that
// group or others can read or replace (checkKeyFile): a leaked private key
// lets anyone impersonate this host. Errors name the file and never its
// contents. path is as the daemon opens it (parser.path). The bytes are
// returned, not a string, so that the caller can clear them (it must) once
// the key is decoded (handshake.ParsePrivateKeyBytes): a string of the key
// would stay in memory until overwritten. On error nothing read is kept.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %v", path, unwrapPathError(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot stat %s: %v", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkKeyFile(path, fi); err != nil {
		return nil, err
	}
	buf := make([]byte, maxKeyFileSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(buf)
		return nil, fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	if n > maxKeyFileSize {
		clear(buf)
		return nil, fmt.Errorf("%s is too large to be a key file", path)
	}
	// Whitespace around the key is all that is left uncleared when the
	// caller clears the trimmed slice.
	return bytes.TrimSpace(buf[:n]), nil
}
