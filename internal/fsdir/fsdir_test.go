package fsdir

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestSync(t *testing.T) {
	if err := Sync(t.TempDir()); err != nil {
		t.Fatalf("Sync of a directory: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "gone")
	if err := Sync(missing); err == nil || !strings.Contains(err.Error(), "fsync of directory "+missing) {
		t.Fatalf("Sync of a missing directory: %v, want an error naming it", err)
	}
}
