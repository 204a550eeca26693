package fsdir

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically and durably, mode 0600: a
// temporary file in the same directory, fsync, rename over path, fsync of
// the directory. A crash leaves the old file or the new one, never part of
// one. On an error before the rename, path is untouched and the temporary
// file is gone; if only the directory's fsync fails the new file is in
// place, but a power loss may still bring the old one back.
//
// Errors name the step and the file; the caller adds what the file is for.
func WriteFile(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
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
	return Sync(dir)
}
