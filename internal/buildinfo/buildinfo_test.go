package buildinfo

import (
	"strings"
	"testing"
)

func TestFeatureRegistry(t *testing.T) {
	t.Cleanup(func() { // the registry is the process's: leave it as found (go test -count=N)
		mu.Lock()
		delete(features, "zz-test")
		mu.Unlock()
	})
	Declare("zz-test", "no")
	if got := value("zz-test"); got != "no" {
		t.Fatalf("declared feature = %q, want no", got)
	}
	SetFeature("zz-test", "yes")
	Declare("zz-test", "no") // a later default must not undo a build-tagged file
	if got := value("zz-test"); got != "yes" {
		t.Fatalf("feature after SetFeature and Declare = %q, want yes", got)
	}
	fs := Features()
	for i := 1; i < len(fs); i++ {
		if fs[i-1].Name >= fs[i].Name {
			t.Fatalf("features not sorted: %v", fs)
		}
	}
}

func TestVersionString(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "1.2.3"
	if got := VersionString(); got != "1.2.3" {
		t.Fatalf("VersionString = %q, want the link-time version", got)
	}
	Version = ""
	if got := VersionString(); got == "" || strings.ContainsAny(got, " \n") {
		t.Fatalf("VersionString without a link-time version = %q", got)
	}
	if !strings.HasPrefix(GoVersion(), "go") {
		t.Fatalf("GoVersion = %q", GoVersion())
	}
}

func value(name string) string {
	for _, f := range Features() {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
