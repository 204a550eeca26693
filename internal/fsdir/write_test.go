package fsdir

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"stunnel/internal/fsdir/fsdirtest"
)

func TestWriteFileReplacesAtMode0600(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("read back %q, %v; want new", got, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	onlyFile(t, dir, "f")
}

// TestWriteFileFailedWriteKeepsOld: a write that fails part way (here the
// file size limit; in life a full disk) is an error, and the old file
// stays whole: the half-written temporary file must not be renamed over it.
func TestWriteFileFailedWriteKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	old := []byte("old contents")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	fsdirtest.LimitFileSize(t, 64)
	if err := WriteFile(path, bytes.Repeat([]byte{'x'}, 4096)); err == nil {
		t.Fatal("WriteFile past the file size limit: no error")
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after a failed write the file holds %q, %v; want the old %q", got, err, old)
	}
	onlyFile(t, dir, "f")
}

func TestWriteFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "f")
	if err := WriteFile(path, []byte("x")); err == nil || !os.IsNotExist(err) {
		t.Fatalf("WriteFile into a missing directory: %v, want not-exist", err)
	}
}

// onlyFile fails unless dir holds exactly name: no temporary file is left.
func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != name {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only %s", names, name)
	}
}
