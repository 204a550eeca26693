package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnStrictReversePath: a full tunnel on a host with strict
// reverse-path filtering gets one warning line naming the interfaces and
// the setting; a host with loose or no filtering gets none.
func TestWarnStrictReversePath(t *testing.T) {
	conf := func(all, eth0 string) string {
		dir := t.TempDir()
		for name, v := range map[string]string{"all": all, "eth0": eth0, "st0": "1"} {
			if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name, "rp_filter"), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	warnStrictReversePath(conf("1", "0"), "st0", log)
	if got := logs.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "level=WARN") ||
		!strings.Contains(got, "rp_filter=2") || !strings.Contains(got, "interfaces=eth0") {
		t.Errorf("strict filtering: log %q, want one warning naming eth0 and rp_filter=2", got)
	}
	logs.Reset()
	warnStrictReversePath(conf("0", "2"), "st0", log)
	warnStrictReversePath(conf("2", "1"), "st0", log)
	if logs.Len() != 0 {
		t.Errorf("loose filtering: %q, want no line", logs.String())
	}
}
