//go:build cgo

package pkcs11key

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// modules are the loaded PKCS#11 modules, one per path, shared by every Key
// of this process: C_Initialize may run once per module and process, and
// C_Finalize only when the last user is gone.
var modules struct {
	mu sync.Mutex
	m  map[string]*module // guarded by mu
}

type module struct {
	ctx  *pkcs11.Ctx
	refs int // guarded by modules.mu
}

// loadModule loads and initializes the module at path, or takes another
// reference to it. Release it with releaseModule.
func loadModule(path string) (*pkcs11.Ctx, error) {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	if m := modules.m[path]; m != nil {
		m.refs++
		return m.ctx, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, errorf(KindModule, nil, "PKCS#11 module %s: %v; check module-path in the pkcs11: URI", path, statReason(err))
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, errorf(KindModule, nil, "PKCS#11 module %s does not load (not a PKCS#11 shared library for this machine?); check module-path in the pkcs11: URI", path)
	}
	if err := ctx.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		ctx.Destroy()
		return nil, errorf(KindModule, err, "PKCS#11 module %s: C_Initialize failed (for SoftHSM2: is SOFTHSM2_CONF or /etc/softhsm/softhsm2.conf readable, and its tokendir there?)", path)
	}
	if modules.m == nil {
		modules.m = make(map[string]*module)
	}
	modules.m[path] = &module{ctx: ctx, refs: 1}
	return ctx, nil
}

func releaseModule(path string) {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m := modules.m[path]
	if m == nil {
		return
	}
	if m.refs--; m.refs > 0 {
		return
	}
	delete(modules.m, path)
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
}

// reinits counts every re-initialization of a module in this process: the
// tests count them to show that a missing token is looked for at most every
// reinitInterval, not at each handshake.
var reinits atomic.Uint64

// reinitModule runs C_Finalize and C_Initialize on a loaded module. Some
// modules (SoftHSM2 among them) find their tokens only at C_Initialize, so
// this is how a token that went away and came back is found again. Every
// session of the module ends: other Keys on it log in again at their next
// operation.
func reinitModule(path string) error {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m := modules.m[path]
	if m == nil {
		return nil
	}
	reinits.Add(1)
	_ = m.ctx.Finalize()
	return m.ctx.Initialize()
}
