package fsdir

import (
	"bytes"
	"errors"
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
	err := WriteFile(path, bytes.Repeat([]byte{'x'}, 4096))
	if err == nil {
		t.Fatal("WriteFile past the file size limit: no error")
	}
	if errors.Is(err, ErrDirSync) {
		t.Errorf("a failed write is marked ErrDirSync (new file in place): %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after a failed write the file holds %q, %v; want the old %q", got, err, old)
	}
	onlyFile(t, dir, "f")
}

func TestWriteFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "f")
	err := WriteFile(path, []byte("x"))
	if err == nil || !os.IsNotExist(err) {
		t.Fatalf("WriteFile into a missing directory: %v, want not-exist", err)
	}
	if errors.Is(err, ErrDirSync) {
		t.Errorf("WriteFile into a missing directory: %v is marked ErrDirSync", err)
	}
}

// TestWriteFileSyncsDirectoryAfterRename: the directory is fsynced once,
// after the rename (the new contents already at path), and a failure of
// that fsync alone is marked ErrDirSync, keeps its cause and text, and
// leaves the new file in place with no temporary file.
func TestWriteFileSyncsDirectoryAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	var synced []string
	var atSync string
	cause := errors.New("input/output error")
	var fail error
	syncDir := func(d string) error {
		synced = append(synced, d)
		b, _ := os.ReadFile(path)
		atSync = string(b)
		return fail
	}
	if err := WriteFileSyncDir(path, []byte("new"), syncDir); err != nil {
		t.Fatalf("WriteFileSyncDir: %v", err)
	}
	if len(synced) != 1 || synced[0] != dir || atSync != "new" {
		t.Fatalf("synced %q with %q at path; want %q once, after the rename (new)", synced, atSync, dir)
	}

	fail = cause
	err := WriteFileSyncDir(path, []byte("newer"), syncDir)
	if !errors.Is(err, ErrDirSync) || !errors.Is(err, cause) || err.Error() != cause.Error() {
		t.Fatalf("failing directory fsync: %v; want ErrDirSync wrapping %q, its text unchanged", err, cause)
	}
	if got, _ := os.ReadFile(path); string(got) != "newer" {
		t.Fatalf("after a failed directory fsync the file holds %q; want the new file in place", got)
	}
	onlyFile(t, dir, "f")
}

// TestWriteFileRelativePath: a bare file name is written in, and syncs,
// the working directory.
func TestWriteFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var synced []string
	err := WriteFileSyncDir("f", []byte("x"), func(d string) error {
		synced = append(synced, d)
		return Sync(d)
	})
	if err != nil || len(synced) != 1 || synced[0] != "." {
		t.Fatalf("WriteFileSyncDir(f): %v, synced %q; want nil, [.]", err, synced)
	}
	onlyFile(t, dir, "f")
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
