//go:build cgo

package pkcs11key

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// A call into the token cannot be interrupted: a token that hangs (a
// wedged USB reader, a network HSM that stopped answering mid-call) would
// hold its caller, and everyone queued behind the Key's lock, for as long
// as it hangs: every handshake worker of the tunnel, and the stop, which
// waits for them. So the Key makes every token call on one goroutine of its
// own, the worker (serve), and its callers hand it an op and wait with a
// deadline:
//
//   - The queue is bounded (opQueueLen): a caller that finds it full fails
//     at once. Callers are the tunnel's own goroutines (its handshake
//     workers, the peers' initiations, a state save); the Key starts none
//     per call, so a hung token costs one goroutine, the worker, and one OS
//     thread in the C call, however many handshakes come in.
//   - A caller waits at most opTimeout, in the queue and in the call. 3 s:
//     a peer sends its initiation again after 5 s (rekey.DefaultRekeyTimeout),
//     and an answer after that is of no use to it; the slowest legitimate
//     op, logging in again after a token reset (session, PIN, key search,
//     two X25519s, on a smart card a second or so), fits with room.
//   - When a caller's deadline passes while its call runs, the token is
//     taken to be hung: that is logged once, and until the call returns
//     every caller fails at once with that reason instead of waiting out
//     its own deadline (and the queue stays empty). The worker skips the
//     ops whose callers left, so a backlog is not run against the token
//     once it answers again; the first op after that logs that it does.
//   - Close does not wait for a hung call: the worker logs out and releases
//     the module when the call returns, which for a daemon that stops is
//     never; the process exits all the same.
//
// The session state (key.go) is the worker's, under Key.mu, which it holds
// while it runs an op: tests take it to act on the token between ops.
// Callers and Close never take it, since a hung call holds it.
const (
	opTimeout = 3 * time.Second
	// openTimeout bounds Open: loading the module, the first login and
	// the key's checks. Longer than opTimeout: it runs once, at start,
	// and a module may enumerate its readers at C_Initialize.
	openTimeout = 30 * time.Second
	// closeTimeout is how long Close waits for the worker to log out.
	closeTimeout = opTimeout
	// opQueueLen bounds the ops waiting for the worker: at a few ms each
	// (a SoftHSM2 X25519; a hardware token is slower) a full queue is
	// about as much as the token can answer within opTimeout.
	opQueueLen = 32
)

// The states of an op: the caller and the worker move it on by
// compare-and-swap, so exactly one of them decides what becomes of it.
const (
	opQueued    uint32 = iota // in the queue
	opRunning                 // the worker runs it
	opDone                    // the worker sent its result on done
	opAbandoned               // its caller left (deadline in the queue, or Close): never run, or its result dropped
	opHung                    // its caller's deadline passed while it ran: the token is taken to hang
)

// op is one token operation handed to the worker.
type op struct {
	run     func() ([32]byte, error) // on the worker, under Key.mu
	state   atomic.Uint32
	started time.Time     // by Key.now; set by the worker before it publishes the op as current
	done    chan opResult // capacity 1: the worker never blocks on it
}

type opResult struct {
	out [32]byte
	err error
}

// serve is the worker: it runs the queued ops, one at a time, until Close;
// then it logs out and releases the module.
func (k *Key) serve() {
	defer close(k.exited)
	for {
		select {
		case <-k.quit:
			k.mu.Lock()
			k.closeLocked()
			k.mu.Unlock()
			return
		case o := <-k.queue:
			k.runOp(o)
		}
	}
}

func (k *Key) runOp(o *op) {
	select {
	case <-k.quit:
		return // its caller leaves too: see do
	default:
	}
	o.started = k.now()
	k.current.Store(o)
	defer k.current.Store(nil)
	if !o.state.CompareAndSwap(opQueued, opRunning) {
		return // its caller left while it waited
	}
	k.mu.Lock()
	out, err := o.run()
	k.mu.Unlock()
	if o.state.CompareAndSwap(opRunning, opDone) {
		o.done <- opResult{out, err}
		return
	}
	clear(out[:]) // nobody waits for it
	if o.state.Load() == opHung {
		k.logf(slog.LevelInfo, "PKCS#11 token answers again", "hung_for", k.now().Sub(o.started).Round(time.Millisecond).String())
	}
}

// do runs f on the worker and waits for its result at most timeout.
func (k *Key) do(timeout time.Duration, f func() ([32]byte, error)) ([32]byte, error) {
	var zero [32]byte
	select {
	case <-k.quit:
		return zero, k.closedError()
	default:
	}
	if cur := k.current.Load(); cur != nil && cur.state.Load() == opHung {
		k.unanswered.Add(1)
		return zero, errorf(KindRuntime, nil, "%s has not answered for %v (a call into it hangs; key %s): failing at once until it answers",
			k.tokenName(), k.now().Sub(cur.started).Round(time.Millisecond), k.objectName())
	}
	o := &op{run: f, done: make(chan opResult, 1)}
	select {
	case k.queue <- o:
	default:
		k.unanswered.Add(1)
		return zero, errorf(KindRuntime, nil, "%s: %d operations with key %s already wait for the token; not queuing another (the token is slower than the handshake rate)",
			k.tokenName(), opQueueLen, k.objectName())
	}
	select {
	case r := <-o.done:
		return r.out, r.err
	case <-k.quit:
		if o.state.CompareAndSwap(opQueued, opAbandoned) || o.state.CompareAndSwap(opRunning, opAbandoned) {
			return zero, k.closedError()
		}
	case <-k.after(timeout):
		if o.state.CompareAndSwap(opQueued, opAbandoned) {
			k.unanswered.Add(1)
			return zero, errorf(KindRuntime, nil, "%s did not get to key %s within %v: other operations were ahead (the token is slower than the handshake rate)",
				k.tokenName(), k.objectName(), timeout)
		}
		if o.state.CompareAndSwap(opRunning, opHung) {
			k.unanswered.Add(1)
			k.logf(slog.LevelWarn, "PKCS#11 token stopped answering: handshakes fail until it answers again (a call into the token cannot be interrupted)", "waited", timeout.String())
			return zero, errorf(KindRuntime, nil, "%s did not answer within %v (key %s): failing at once until it answers",
				k.tokenName(), timeout, k.objectName())
		}
	}
	// The worker finished it as we gave up: its result is there.
	r := <-o.done
	return r.out, r.err
}

func (k *Key) closedError() error {
	return errorf(KindRuntime, nil, "%s: key %s is closed", k.tokenName(), k.objectName())
}

// Close stops the worker, which logs out, closes the session and releases
// the module. It waits for that at most closeTimeout, and not at all when
// a call into the token hangs: then it returns an error saying so, and the
// worker finishes if the call ever returns. Safe to call more than once.
func (k *Key) Close() error {
	k.quitOnce.Do(func() { close(k.quit) })
	if k.Hung() {
		return errorf(KindRuntime, nil, "%s hangs: key %s closed without logging out", k.tokenName(), k.objectName())
	}
	select {
	case <-k.exited:
		return nil
	case <-k.after(closeTimeout):
		return errorf(KindRuntime, nil, "%s did not answer within %v: key %s closed without logging out", k.tokenName(), closeTimeout, k.objectName())
	}
}

// SetLogger gives the key a logger for what its callers cannot see one by
// one: that the token stopped answering, that it answers again, and each
// login (a line each, not one per handshake). Without one nothing is logged.
func (k *Key) SetLogger(l *slog.Logger) { k.log.Store(l) }

func (k *Key) logf(level slog.Level, msg string, args ...any) {
	if l := k.log.Load(); l != nil {
		l.Log(context.Background(), level, msg, append([]any{"token", k.tokenName(), "key", k.objectName()}, args...)...)
	}
}

// Hung reports whether a call into the token has not returned within its
// caller's deadline: until it does, every operation fails at once.
func (k *Key) Hung() bool {
	cur := k.current.Load()
	return cur != nil && cur.state.Load() == opHung
}

// Unanswered counts the operations that failed because the token did not
// answer in time: a deadline passed, the token hung, or the queue was full.
func (k *Key) Unanswered() uint64 { return k.unanswered.Load() }
