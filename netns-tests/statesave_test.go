package netnstests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `stunnel state save` writes the running config's state_file: after a
// reload that moves it, the new path, as the save on stop does, never the
// start-up one.
func TestStateSaveAfterReloadUsesNewPath(t *testing.T) {
	l := newLab(t)
	a := l.newNode(l.ns("a"), "host-a", underA, overA+"/24")
	a.start()
	old := a.statePath()
	moved := filepath.Join(a.dir, "moved", "host-a.state")
	cfg := a.config()
	from := fmt.Sprintf("state_file = %q", old)
	if !strings.Contains(cfg, from) {
		t.Fatalf("the node's config has no %s:\n%s", from, cfg)
	}
	a.writeRaw(strings.Replace(cfg, from, fmt.Sprintf("state_file = %q", moved), 1))
	for _, args := range [][]string{{"reload", "-i", devName}, {"state", "save", "-i", devName}} {
		if code, out, errs := runAs(stunnelBin, a.runDir, nil, args...); code != 0 {
			t.Fatalf("stunnel %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errs)
		}
	}
	if _, err := os.Stat(moved); err != nil {
		t.Errorf("state save after the reload did not write the reloaded state_file: %v", err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Errorf("state save after the reload wrote the start-up state_file %s", old)
	}
}
