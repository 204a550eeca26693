//go:build cgo

package pkcs11key

import (
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"stunnel/handshake"
	"stunnel/internal/softhsmtest"
	"stunnel/internal/waitfor"
)

// gatedToken is the module with a gate before C_DeriveKey: while the gate
// is shut, each call waits at it, as a call into a wedged token does.
type gatedToken struct {
	tokenCalls
	mu      sync.Mutex
	gate    chan struct{} // guarded by mu; nil: open
	waiting atomic.Int32  // calls at the gate now
}

func (g *gatedToken) DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, base pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.waiting.Add(1)
		<-gate
		g.waiting.Add(-1)
	}
	return g.tokenCalls.DeriveKey(sh, m, base, a)
}

// hang shuts the gate: the token stops answering.
func (g *gatedToken) hang() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
}

// answer opens the gate: the waiting call and all later ones go through.
func (g *gatedToken) answer() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

// deadlines is the Key's deadline timer under the test's control: no
// deadline passes until expire, which passes all those armed so far.
type deadlines struct {
	mu    sync.Mutex
	ch    chan time.Time // guarded by mu
	armed atomic.Int32   // after calls so far
}

func (d *deadlines) after(time.Duration) <-chan time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed.Add(1)
	return d.ch
}

func (d *deadlines) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.ch)
	d.ch = make(chan time.Time)
}

// logLines collects a logger's lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// gatedKey is a token key whose module calls pass gate and whose callers'
// deadlines pass when dl says; opened with the gate already shut when
// hungAtOpen. The cleanup opens the gate and waits for the worker to end.
type gatedKey struct {
	tok  *softhsmtest.Token
	u    *URI
	gate *gatedToken
	dl   *deadlines
	logs *logLines
}

func newGatedKey(t *testing.T) (*gatedKey, *Key) {
	t.Helper()
	g := newGated(t)
	k, err := g.open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	g.cleanup(t, k)
	return g, k
}

func newGated(t *testing.T) *gatedKey {
	t.Helper()
	tok := softhsmtest.New(t, "gw")
	u := mustParse(t, tok.URI("site-a"))
	if _, err := Generate(u, ""); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return &gatedKey{tok: tok, u: u, gate: &gatedToken{}, dl: &deadlines{ch: make(chan time.Time)}, logs: &logLines{}}
}

func (g *gatedKey) open() (*Key, error) {
	return openKey(g.u, "", func(k *Key) {
		k.after = g.dl.after
		k.wrap = func(c tokenCalls) tokenCalls { g.gate.tokenCalls = c; return g.gate }
		k.SetLogger(slog.New(slog.NewTextHandler(g.logs, nil)))
	})
}

func (g *gatedKey) cleanup(t *testing.T, k *Key) {
	t.Cleanup(func() {
		g.gate.answer()
		k.Close()
		select {
		case <-k.exited:
		case <-time.After(10 * time.Second):
			t.Error("the key's worker did not end once the token answered")
		}
	})
}

// result waits for a caller's error, failing the test if it does not come.
func result(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// TestHungTokenFailsHandshake: a token call that hangs fails the handshake
// it serves when its deadline passes, with the token's name and the
// deadline in the error, and not before; the hang is logged once. When
// the token answers again, handshakes work again, without a new Open.
func TestHungTokenFailsHandshake(t *testing.T) {
	g, k := newGatedKey(t)
	memPriv, _ := handshake.GeneratePrivateKey(nil)
	tokCfg := &handshake.Config{PeerID: []byte("site-a"), Static: k,
		Peers: peers{"site-b": {PublicKey: memPriv.PublicKey(), ID: "site-b"}}}
	memCfg := &handshake.Config{PeerID: []byte("site-b"), PrivateKey: memPriv,
		Peers: peers{"site-a": {PublicKey: k.Public(), ID: "site-a"}}}
	runHandshake(t, memCfg, tokCfg, handshake.NewResponder(tokCfg))

	g.gate.hang()
	in, err := handshake.NewInitiation(memCfg, handshake.PeerInfo{PublicKey: k.Public(), ID: "site-a"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	handshake.NewCookieGenerator(k.Public(), nil).AddMACs(msg)
	errc := make(chan error, 1)
	armed := g.dl.armed.Load()
	go func() {
		_, _, err := handshake.NewResponder(tokCfg).ConsumeInitiation(msg, 3)
		errc <- err
	}()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the responder's X25519 waiting in the token, its deadline armed", func() bool {
		return g.gate.waiting.Load() == 1 && g.dl.armed.Load() > armed
	})
	select {
	case err := <-errc:
		t.Fatalf("the handshake failed before its deadline: %v", err)
	default:
	}
	g.dl.expire()
	err = result(t, errc, "the handshake with the token hung")
	if !errors.Is(err, handshake.ErrStaticKey) || !strings.Contains(err.Error(), `token "gw" did not answer within 3s (key "site-a")`) {
		t.Fatalf("handshake with the token hung: %v, want a static-key error naming the token and the deadline", err)
	}
	if strings.Contains(err.Error(), softhsmtest.PIN) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line without the PIN: %q", err)
	}
	if n := g.logs.count("PKCS#11 token stopped answering"); n != 1 {
		t.Fatalf("%d lines saying the token stopped answering, want 1", n)
	}

	g.gate.answer()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the hung call to return", func() bool { return k.current.Load() == nil })
	if n := g.logs.count("PKCS#11 token answers again"); n != 1 {
		t.Fatalf("%d lines saying the token answers again, want 1", n)
	}
	runHandshake(t, memCfg, tokCfg, handshake.NewResponder(tokCfg))
	runHandshake(t, tokCfg, memCfg, handshake.NewResponder(memCfg))
}

// TestHungTokenBoundsCallers: while a call hangs, callers queue up to
// opQueueLen and the next one fails at once; when the deadlines pass they
// all return, and from then on, while the call still hangs, every caller
// fails at once without queuing. No goroutine is left per caller, the ops
// whose callers left are never run, and the hang is logged once however
// many callers fail.
func TestHungTokenBoundsCallers(t *testing.T) {
	g, k := newGatedKey(t)
	peer, _ := handshake.GeneratePrivateKey(nil)
	want, _ := handshake.MemoryKey(peer).SharedSecret(k.Public())
	call := func(errc chan<- error) {
		_, err := k.SharedSecret(peer.PublicKey())
		errc <- err
	}
	opsBefore := k.Ops()
	g.gate.hang()
	armedBefore := g.dl.armed.Load()
	first := make(chan error, 1)
	go call(first)
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the first call waiting in the token", func() bool { return g.gate.waiting.Load() == 1 })
	base := runtime.NumGoroutine()

	queued := make(chan error, opQueueLen)
	for range opQueueLen {
		go call(queued)
	}
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the queue to fill", func() bool { return len(k.queue) == opQueueLen })
	// Every caller so far waits on its deadline before any passes (a
	// caller that had not armed its own yet would wait for good).
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the callers' deadlines armed", func() bool {
		return g.dl.armed.Load() == armedBefore+1+opQueueLen
	})
	if _, err := k.SharedSecret(peer.PublicKey()); err == nil || !strings.Contains(err.Error(), "already wait for the token") {
		t.Fatalf("a call with the queue full: %v, want an immediate refusal", err)
	}

	g.dl.expire()
	if err := result(t, first, "the hung call's caller"); err == nil || !strings.Contains(err.Error(), "did not answer within 3s") {
		t.Fatalf("the hung call: %v, want its deadline error", err)
	}
	for range opQueueLen {
		if err := result(t, queued, "a queued caller"); err == nil || !strings.Contains(err.Error(), `did not get to key "site-a" within 3s`) {
			t.Fatalf("a queued call: %v, want its deadline error", err)
		}
	}

	if !k.Hung() {
		t.Fatal("Hung is false with a call past its deadline")
	}
	// Hung: a flood of callers fails at once, none queues, no deadline passes.
	const flood = 500
	armed := g.dl.armed.Load()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range flood {
		wg.Go(func() {
			_, err := k.SharedSecret(peer.PublicKey())
			if err != nil && strings.Contains(err.Error(), `token "gw" has not answered for`) {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n != flood {
		t.Fatalf("%d of %d calls to the hung token failed at once saying so", n, flood)
	}
	// The queue holds the abandoned ops until the worker is back (it
	// skips them then), and nothing more.
	if n := g.dl.armed.Load() - armed; n != 0 || len(k.queue) != opQueueLen {
		t.Fatalf("calls to a hung token waited (%d deadlines armed) or queued (%d in the queue, want the %d abandoned)", n, len(k.queue), opQueueLen)
	}
	// The callers' goroutines are the test's; once they are gone, what
	// is left is what was there before they came: the Key started none.
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "goroutines back to what they were with the token hung", func() bool { return runtime.NumGoroutine() <= base-1 })
	if n, want := k.Unanswered(), uint64(1+opQueueLen+1+flood); n != want {
		t.Errorf("Unanswered = %d, want %d", n, want)
	}
	if n := g.logs.count("PKCS#11 token stopped answering"); n != 1 {
		t.Fatalf("%d lines saying the token stopped answering, want 1", n)
	}

	g.gate.answer()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the hung call to return", func() bool { return k.current.Load() == nil })
	if k.Hung() {
		t.Fatal("Hung is still true once the call returned")
	}
	if got, err := k.SharedSecret(peer.PublicKey()); err != nil || got != want {
		t.Fatalf("after the token answered again: %v", err)
	}
	if n := k.Ops() - opsBefore; n != 2 {
		t.Fatalf("%d token operations, want 2 (the hung one and the last): the abandoned ones must not run", n)
	}
}

// hungSharedSecret opens a gated key and starts one SharedSecret with peer
// that hangs in the token; its error comes on errc once it gives up.
func hungSharedSecret(t *testing.T) (g *gatedKey, k *Key, peer handshake.PrivateKey, errc chan error) {
	t.Helper()
	g, k = newGatedKey(t)
	peer, _ = handshake.GeneratePrivateKey(nil)
	g.gate.hang()
	armed := g.dl.armed.Load()
	errc = make(chan error, 1)
	go func() { _, err := k.SharedSecret(peer.PublicKey()); errc <- err }()
	// Its caller's deadline armed too: the call reaches the token on the
	// worker, and a test that expires deadlines before the caller has
	// armed its own would leave the caller waiting for good.
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the call waiting in the token, its deadline armed", func() bool {
		return g.gate.waiting.Load() == 1 && g.dl.armed.Load() > armed
	})
	return g, k, peer, errc
}

// TestCloseDoesNotWaitForHungToken: Close returns at once when a call
// hangs, and its callers with it; the worker logs out and releases the
// module once the call returns. A call that has not yet passed its
// deadline makes Close wait closeTimeout at most.
func TestCloseDoesNotWaitForHungToken(t *testing.T) {
	t.Run("hung", func(t *testing.T) {
		g, k, peer, errc := hungSharedSecret(t)
		g.dl.expire()
		result(t, errc, "the hung call's caller")
		closed := make(chan error, 1)
		go func() { closed <- k.Close() }()
		if err := result(t, closed, "Close with the token hung"); err == nil || !strings.Contains(err.Error(), `token "gw" hangs`) {
			t.Fatalf("Close: %v, want an error saying the token hangs", err)
		}
		if _, err := k.SharedSecret(peer.PublicKey()); err == nil || !strings.Contains(err.Error(), "is closed") {
			t.Fatalf("SharedSecret after Close: %v", err)
		}
		g.gate.answer()
		result(t, chanOf(k.exited), "the worker after the token answered")
		if moduleLoaded(g.u.ModulePath) {
			t.Fatal("the module was not released once the hung call returned")
		}
	})
	t.Run("waiting", func(t *testing.T) {
		g, k, _, errc := hungSharedSecret(t)
		armed := g.dl.armed.Load()
		closed := make(chan error, 1)
		go func() { closed <- k.Close() }()
		if err := result(t, errc, "the caller at Close"); err == nil || !strings.Contains(err.Error(), "is closed") {
			t.Fatalf("the caller at Close: %v, want a closed-key error", err)
		}
		waitfor.Cond(t, 10*time.Second, time.Millisecond, "Close waiting for the worker", func() bool { return g.dl.armed.Load() == armed+1 })
		g.dl.expire()
		if err := result(t, closed, "Close"); err == nil || !strings.Contains(err.Error(), "did not answer within 3s") {
			t.Fatalf("Close: %v, want an error saying the token did not answer", err)
		}
	})
}

// TestOpenTimesOut: a token that hangs at Open fails it, and the module is
// released once the call returns.
func TestOpenTimesOut(t *testing.T) {
	g := newGated(t)
	g.gate.hang()
	type opened struct {
		k   *Key
		err error
	}
	done := make(chan opened, 1)
	armed := g.dl.armed.Load()
	go func() { k, err := g.open(); done <- opened{k, err} }()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "Open's X25519 waiting in the token, its deadline armed", func() bool {
		return g.gate.waiting.Load() == 1 && g.dl.armed.Load() > armed
	})
	g.dl.expire()
	var o opened
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Open did not return at its deadline")
	}
	var e *Error
	if o.k != nil || !errors.As(o.err, &e) || e.Kind != KindRuntime || !strings.Contains(o.err.Error(), `token "gw" did not answer within 30s`) {
		t.Fatalf("Open with the token hung: %v, want its deadline error (KindRuntime: up exits 1 and is restarted)", o.err)
	}
	g.gate.answer()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the module to be released", func() bool { return !moduleLoaded(g.u.ModulePath) })
}

func chanOf(c <-chan struct{}) <-chan error {
	errc := make(chan error, 1)
	go func() { <-c; errc <- nil }()
	return errc
}

func moduleLoaded(path string) bool {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	return modules.m[path] != nil
}

// stuckFind is the module with a gate before C_FindObjectsInit, shut
// until open is closed.
type stuckFind struct {
	tokenCalls
	open    chan struct{}
	waiting atomic.Int32
}

func (s *stuckFind) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	s.waiting.Add(1)
	<-s.open
	return s.tokenCalls.FindObjectsInit(sh, temp)
}

// TestGenerateTimesOut: a token that hangs while `genkey --pkcs11` makes
// a key fails it at the deadline, as it fails Open, instead of holding the
// command for as long as it hangs; the module is released once the call
// returns.
func TestGenerateTimesOut(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	u := mustParse(t, tok.URI("site-a"))
	dl := &deadlines{ch: make(chan time.Time)}
	stuck := &stuckFind{open: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := generate(u, "", dl.after, func(c tokenCalls) tokenCalls { stuck.tokenCalls = c; return stuck })
		done <- err
	}()
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "Generate waiting in the token, its deadline armed", func() bool {
		return stuck.waiting.Load() == 1 && dl.armed.Load() > 0
	})
	dl.expire()
	err := result(t, done, "Generate with the token hung")
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindRuntime || !strings.Contains(err.Error(), `token "gw" did not answer within 30s while making key "site-a"`) {
		t.Fatalf("Generate with the token hung: %v, want its deadline error", err)
	}
	close(stuck.open)
	waitfor.Cond(t, 10*time.Second, time.Millisecond, "the module to be released", func() bool { return !moduleLoaded(u.ModulePath) })
}

// failingLogin is the module with C_Login failing as err.
type failingLogin struct {
	tokenCalls
	err error
}

func (f *failingLogin) Login(sh pkcs11.SessionHandle, userType uint, pin string) error { return f.err }

// A token that goes away or fails during the login is a token problem
// (KindToken: up exits 1 and the unit tries again), not a PIN problem
// (KindPIN: exit 2, no restart), which would leave the tunnel down for
// good after a token was pulled at the wrong moment. A wrong PIN stays
// KindPIN.
func TestLoginFailureKinds(t *testing.T) {
	tok := softhsmtest.New(t, "gw")
	u := mustParse(t, tok.URI("site-a"))
	ctx, err := loadModule(u.ModulePath)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseModule(u.ModulePath)
	for _, c := range []struct {
		err  pkcs11.Error
		want Kind
	}{
		{pkcs11.CKR_DEVICE_REMOVED, KindToken},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, KindToken},
		{pkcs11.CKR_DEVICE_ERROR, KindToken},
		{pkcs11.CKR_PIN_INCORRECT, KindPIN},
		{pkcs11.CKR_PIN_EXPIRED, KindPIN},
	} {
		_, err := openSession(&failingLogin{tokenCalls: ctx, err: c.err}, u, tok.PinFile, false, nil)
		var e *Error
		if !errors.As(err, &e) || e.Kind != c.want {
			t.Errorf("login failing with %v: %v, want kind %v", c.err, err, c.want)
		}
	}
}
