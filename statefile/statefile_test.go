package statefile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"

	"stunnel/handshake"
	"stunnel/internal/fsdir"
)

// memKey is an in-memory StaticKey, as handshake's wrapper will be.
type memKey struct{ priv [32]byte }

func newKey(t testing.TB) *memKey {
	t.Helper()
	k, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &memKey{priv: k}
}

func (k *memKey) Public() handshake.PublicKey {
	var p handshake.PublicKey
	out, _ := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	copy(p[:], out)
	return p
}

func (k *memKey) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	var s [32]byte
	out, err := curve25519.X25519(k.priv[:], peer[:])
	copy(s[:], out)
	return s, err
}

// failingKey is a token that has gone away.
type failingKey struct{ memKey }

func (failingKey) SharedSecret(handshake.PublicKey) ([32]byte, error) {
	return [32]byte{}, errors.New("token removed")
}

func payload(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestSaveTakeRoundTrip(t *testing.T) {
	for _, clean := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "st0.state")
		key := newKey(t)
		data := payload(t, 5000)
		before := time.Now()
		if err := Save(path, key, Payload{Data: data, CleanStop: clean}); err != nil {
			t.Fatal(err)
		}
		p, err := Take(path, key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Data, data) || p.CleanStop != clean {
			t.Fatalf("round trip: clean=%v got clean=%v, data equal=%v", clean, p.CleanStop, bytes.Equal(p.Data, data))
		}
		if p.Written.Before(before.Add(-time.Second)) || p.Written.After(time.Now()) {
			t.Fatalf("Written = %v, not the time of Save", p.Written)
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
			t.Fatalf("Take left %d files behind (%s); a consumed state must be gone", len(entries), entries[0].Name())
		}
	}
}

func TestEmptyPayload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	key := newKey(t)
	if err := Save(path, key, Payload{}); err != nil {
		t.Fatal(err)
	}
	p, err := Take(path, key)
	if err != nil || len(p.Data) != 0 {
		t.Fatalf("Take = %d bytes, %v; want empty payload", len(p.Data), err)
	}
}

func TestConsumedFileCannotBeTakenAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st0.state")
	key := newKey(t)
	if err := Save(path, key, Payload{Data: []byte("sessions"), CleanStop: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Take(path, key); err != nil {
		t.Fatal(err)
	}
	_, err := Take(path, key)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Take = %v; want fs.ErrNotExist (the state is consumed)", err)
	}
}

func TestConcurrentTakesRestoreOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st0.state")
	key := newKey(t)
	if err := Save(path, key, Payload{Data: []byte("x"), CleanStop: true}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Take(path, key); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Take: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent Takes got the state; exactly one may", wins)
	}
}

func TestEveryTamperedByteRefused(t *testing.T) {
	key := newKey(t)
	data := payload(t, 64)
	sealed, err := Seal(key, Payload{Data: data, CleanStop: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(key, sealed); err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for _, flip := range []byte{0x01, 0x80} {
			b := bytes.Clone(sealed)
			b[i] ^= flip
			p, err := Open(key, b)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("byte %d ^ %#x: Open = %d bytes, %v; want a refusal", i, flip, len(p.Data), err)
			}
		}
	}
	for n := range sealed {
		if _, err := Open(key, sealed[:n]); !errors.Is(err, ErrRefused) {
			t.Fatalf("truncated to %d bytes: %v; want a refusal", n, err)
		}
	}
	if _, err := Open(key, append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrTampered) {
		t.Fatalf("extended by one byte: %v; want ErrTampered", err)
	}
}

func TestTamperedFileMovedAsideAndRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "st0.state")
	key := newKey(t)
	if err := Save(path, key, Payload{Data: []byte("sessions"), CleanStop: true}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	os.WriteFile(path, b, 0o600)
	_, err := Take(path, key)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), ".refused") {
		t.Fatalf("Take of a tampered file = %v; want ErrTampered naming where it went", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a refused file is still at the state path; the next start would try it again")
	}
	if _, err := os.Stat(path + ".refused"); err != nil {
		t.Fatalf("refused file not kept aside: %v", err)
	}
	if _, err := Take(path, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Take after a refusal = %v; want fs.ErrNotExist", err)
	}
}

func TestOtherHostsKeyRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st0.state")
	if err := Save(path, newKey(t), Payload{Data: []byte("sessions"), CleanStop: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Take(path, newKey(t)); !errors.Is(err, ErrOtherKey) {
		t.Fatalf("Take under another key = %v; want ErrOtherKey", err)
	}
}

// A forged key ID (the header names our key) still fails: the key ID is
// only for the error message, the AEAD is what refuses.
func TestOtherKeyWithForgedKeyIDRefused(t *testing.T) {
	ours, theirs := newKey(t), newKey(t)
	sealedOurs, _ := Seal(ours, Payload{Data: []byte("a")}, time.Now())
	sealedTheirs, _ := Seal(theirs, Payload{Data: []byte("a")}, time.Now())
	copy(sealedTheirs[20:36], sealedOurs[20:36])
	if _, err := Open(ours, sealedTheirs); !errors.Is(err, ErrTampered) {
		t.Fatalf("Open = %v; want ErrTampered", err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	key := newKey(t)
	sealed, _ := Seal(key, Payload{Data: []byte("a")}, time.Now())
	sealed[8] = Version + 1
	if _, err := Open(key, sealed); !errors.Is(err, ErrNewer) {
		t.Fatalf("Open of a version %d file = %v; want ErrNewer", Version+1, err)
	}
	sealed[8] = 0
	if _, err := Open(key, sealed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a version 0 file = %v; want ErrCorrupt", err)
	}
}

func TestNotAStateFile(t *testing.T) {
	key := newKey(t)
	for _, b := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0}, 200)} {
		if _, err := Open(key, b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open(%q...) = %v; want ErrCorrupt", b[:min(len(b), 8)], err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "st0.state")
	os.Mkdir(path, 0o700)
	if _, err := Take(path, key); !errors.Is(err, ErrRefused) {
		t.Fatalf("Take of a directory = %v; want a refusal", err)
	}
}

func TestTokenFailureIsNotARefusal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st0.state")
	key := newKey(t)
	if err := Save(path, key, Payload{Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	bad := &failingKey{*key}
	if err := Save(path+"2", bad, Payload{}); err == nil || !strings.Contains(err.Error(), "token removed") {
		t.Fatalf("Save with a failing token = %v", err)
	}
	_, err := Take(path, bad)
	if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "token removed") {
		t.Fatalf("Take with a failing token = %v; want the token's error", err)
	}
	if _, err := Take(path, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a state that failed to open was left to be read again: %v", err)
	}
}

func TestWrittenFileModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "st0.state")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	if err := Save(path, newKey(t), Payload{Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Fatalf("mode %v; want -rw------- (the file holds session keys)", fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Fatalf("owner %d:%d; want the daemon's %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("Save left %d files; want only the state file (no temp file)", len(entries))
	}
}

// Save replaces an existing state file whole, and a Save that fails over
// one leaves it byte for byte as it was, with no temporary file beside it:
// a state file saved at one stop must survive a failing save at the next.
// Each failing Save writes over an existing state file, failing before the
// temporary file is made (the token is gone) and when it cannot be made
// (its name, the state file's plus a suffix, is too long for the file
// system), so a Save that truncated or wrote the state file in place would
// be caught.
func TestSaveReplacesAtomicallyAndFailsCleanly(t *testing.T) {
	key := newKey(t)
	for _, c := range []struct {
		name string
		base string // the state file's name
		key  StaticKey
	}{
		{"token removed", "st0.state", &failingKey{memKey: *key}},
		// 250 characters fit a name (255 at most); with ".tmp-" and
		// CreateTemp's digits the temporary file's do not.
		{"temporary file cannot be made", strings.Repeat("s", 244) + ".state", key},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, c.base)
		// Saved under a short name (a long one's temporary file cannot
		// be made), replaced by a second Save, then moved to path.
		saved := filepath.Join(dir, "saved.state")
		if err := Save(saved, key, Payload{Data: []byte("old")}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := Save(saved, key, Payload{Data: []byte("new")}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := os.Rename(saved, path); err != nil {
			t.Fatal(err)
		}
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := Save(path, c.key, Payload{Data: []byte("newer"), CleanStop: true}); err == nil {
			t.Fatalf("%s: Save over the existing state file succeeded", c.name)
		}
		after, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(after, before) {
			t.Fatalf("%s: the failed Save changed the existing state file (%d bytes, was %d; %v)", c.name, len(after), len(before), err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("%s: the failed Save left %d files; want only the state file", c.name, len(entries))
		}
		// Take makes its own temporary name, too long here: read it back
		// the way Take does once it has the file.
		p, err := Open(key, after)
		if err != nil || string(p.Data) != "new" || p.CleanStop {
			t.Fatalf("%s: the state file holds %q (clean %v), %v; want the second Save's", c.name, p.Data, p.CleanStop, err)
		}
	}
}

// When only the directory's fsync fails, the new state is in place: Save's
// error must say it is written (an operator reading "saving state failed"
// would think the sessions were lost), and the next start restores it.
func TestSaveSaysWrittenWhenOnlyTheDirectorySyncFails(t *testing.T) {
	real := syncDir
	t.Cleanup(func() { syncDir = real })
	syncDir = func(string) error { return syscall.EIO }

	path := filepath.Join(t.TempDir(), "state")
	key := newKey(t)
	err := Save(path, key, Payload{Data: []byte("sessions"), CleanStop: true})
	if err == nil || !errors.Is(err, fsdir.ErrDirSync) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Save with a failing directory fsync: %v, want ErrDirSync and EIO in the chain", err)
	}
	if want := "state written to " + path + ", but a crash may lose it"; !strings.Contains(err.Error(), want) {
		t.Fatalf("Save's error %q does not say %q", err, want)
	}
	syncDir = real
	p, err := Take(path, key)
	if err != nil || string(p.Data) != "sessions" || !p.CleanStop {
		t.Fatalf("Take after a save whose directory fsync failed: %+v, %v; want the saved sessions", p, err)
	}
}
