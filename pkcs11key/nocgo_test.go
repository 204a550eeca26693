//go:build !cgo

package pkcs11key

import (
	"errors"
	"strings"
	"testing"
)

// Run with CGO_ENABLED=0 go test ./pkcs11key/.
func TestNoCgoBuildSaysSo(t *testing.T) {
	u, err := ParseURI("pkcs11:token=gw;object=a?module-path=/usr/lib/softhsm/libsofthsm2.so")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(u, "")
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindUnsupported || !strings.Contains(err.Error(), "this build has no PKCS#11 support") {
		t.Fatalf("Open in a build without cgo: %v", err)
	}
	if _, err := Generate(u, ""); err == nil || Supported {
		t.Fatal("Generate in a build without cgo did not fail, or Supported is true")
	}
}
