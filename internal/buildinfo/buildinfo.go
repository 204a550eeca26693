// Package buildinfo is what `stunnel version` reports: the version, the Go
// toolchain and the optional features compiled into this binary.
//
// A feature that lives in files behind a build tag adds itself from an init
// function there, so the version command never needs to know which tags
// exist:
//
//	//go:build sometag
//	func init() { buildinfo.SetFeature("sometag", "yes") }
//
// A feature that is known but compiled out is declared with its "no" value
// where it is always built (see Declare), so `stunnel version` says so.
// PKCS#11 needs no tag: it is built with cgo, and cmd/stunnel declares it
// from pkcs11key.Supported.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
)

// Version is set at link time (make build: -ldflags "-X
// stunnel/internal/buildinfo.Version=..."); empty means a plain `go build`,
// and the VCS revision Go recorded is shown instead.
var Version string

var (
	mu       sync.Mutex // guards features; init functions may run in any order
	features = map[string]string{}
)

// Declare records a feature with its value unless a build-tagged file has
// already set it: the default of a feature that is compiled out.
func Declare(name, value string) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := features[name]; !ok {
		features[name] = value
	}
}

// SetFeature records a feature's value, overriding a Declare.
func SetFeature(name, value string) {
	mu.Lock()
	defer mu.Unlock()
	features[name] = value
}

// Feature is one optional feature and its value, e.g. pkcs11: yes.
type Feature struct{ Name, Value string }

// Features returns every recorded feature, sorted by name.
func Features() []Feature {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Feature, 0, len(features))
	for n, v := range features {
		out = append(out, Feature{n, v})
	}
	slices.SortFunc(out, func(a, b Feature) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// VersionString is Version, or else the module version or VCS revision the
// Go toolchain recorded, or "devel".
func VersionString() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + dirty
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}

// GoVersion is the toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
