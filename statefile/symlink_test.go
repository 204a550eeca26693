package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A state file reached through a symbolic link is refused, not restored.
// Take consumes what is at the path by renaming and unlinking it; for a
// link that removes the link and leaves the state it points to on disk,
// so a link made anew (a provisioning step that restores it, say) had the
// same state restored again, with the same keys at the same counters.
func TestSymlinkedStateRefused(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	target := filepath.Join(dir, "elsewhere.state")
	if err := Save(target, key, Payload{Data: []byte("sessions"), CleanStop: true}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "st0.state")
	for i := range 2 {
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		p, err := Take(path, key)
		if !errors.Is(err, ErrRefused) || p.Data != nil {
			t.Fatalf("Take %d through a symbolic link = %q, %v; want a refusal and nothing restored", i+1, p.Data, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("after Take %d the link is still at the path: %v", i+1, err)
		}
	}
}
