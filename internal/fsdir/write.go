package fsdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrDirSync is in the chain (errors.Is) of a WriteFile error from its last
// step, the directory's fsync: the rename is done and the new file is in
// place, but a power loss may still bring the old one back (or none where
// there was none). Any other WriteFile error left path untouched. Callers
// tell the two apart so that an operator knows whether the new file is
// there.
var ErrDirSync = errors.New("fsync of the directory after the rename failed")

// dirSyncError marks the directory fsync's error with ErrDirSync, keeping
// its text: Sync's already names the directory.
type dirSyncError struct{ err error }

func (e dirSyncError) Error() string   { return e.err.Error() }
func (e dirSyncError) Unwrap() []error { return []error{ErrDirSync, e.err} }

// WriteFile writes data to path atomically and durably, mode 0600: a
// temporary file in the same directory, fsync, rename over path, fsync of
// the directory. A crash leaves the old file or the new one, never part of
// one. On an error before the rename, path is untouched and the temporary
// file is gone; if only the directory's fsync fails (ErrDirSync) the new
// file is in place, but a power loss may still bring the old one back.
//
// Errors name the step and the file; the caller adds what the file is for.
func WriteFile(path string, data []byte) error {
	return WriteFileSyncDir(path, data, Sync)
}

// WriteFileSyncDir is WriteFile with syncDir in place of Sync for its last
// step. It is a seam for the callers' tests, which swap syncDir to see that
// the directory is fsynced after the rename, or to make that fail; an error
// from syncDir is marked with ErrDirSync as Sync's is.
func WriteFileSyncDir(path string, data []byte, syncDir func(dir string) error) error {
	// Dir, not Split: the directory is named without a trailing separator,
	// in errors and to syncDir.
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp uses 0600 today; Chmod makes that independent of it.
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return dirSyncError{err}
	}
	return nil
}
