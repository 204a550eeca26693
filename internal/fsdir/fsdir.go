// Package fsdir makes a directory's entries durable.
package fsdir

import (
	"fmt"
	"os"
)

// Sync fsyncs dir, so that a rename or a new file in it survives a crash:
// without it a crash can undo the rename of a file written and fsynced
// whole (the old file back, or none where there was none).
func Sync(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync of directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync of directory %s: %w", dir, err)
	}
	return nil
}
