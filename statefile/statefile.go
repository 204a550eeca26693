// Package statefile is the sealed, consume-once file in which the daemon
// keeps its sessions across a restart.
//
// The file is useless without this host's static private key: it is sealed
// with XChaCha20-Poly1305 under a key derived from X25519(static private,
// static public), which only the holder of the private key (in memory or in
// a PKCS#11 token, through StaticKey) can compute. The payload is opaque
// bytes to this package; the caller (the session core) encodes sessions and
// tickets into it.
//
// Format, version 1 (all integers little-endian):
//
//	offset  size  field
//	0       8     magic "STUNSTAT"
//	8       1     version (1)
//	9       1     flags: bit 0 = CleanStop; other bits must be zero
//	10      2     reserved, zero
//	12      8     written at, Unix nanoseconds
//	20      16    key ID: SHA-256("stunnel state key id v1" || static public key)[:16]
//	36      24    random nonce
//	60      ...   ciphertext of the payload with a 16-byte tag; the 60 header
//	              bytes are the associated data, so every header byte is
//	              authenticated too
//
// Invariant for the caller (the reason for Take's order of operations): one
// saved state is restored at most once. Take claims the file by renaming it
// (only one claimer can succeed), authenticates it, and unlinks it and
// fsyncs the directory before it returns the payload. A crash anywhere in
// Take leaves at most a claimed file under another name, which no later
// start reads: the state is lost, never restored twice. Losing it costs a
// handshake; restoring it twice would reuse nonces.
//
// What consume-once cannot see: a copy of the file brought back from outside
// (a backup, a VM snapshot rolled back, a disk image cloned to a second host
// with the same key). The bound there is the keys' own life: a keypair is
// refused once reject-after-time has passed since its creation
// (rekey.ImportKeypair), so a copy is dangerous for at most reject_after
// (180 s by default) after the session was made. Do not back up the state
// directory; do not start a clone with the original's key.
package statefile

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"stunnel/handshake"
	"stunnel/internal/fsdir"
)

// StaticKey is this host's static X25519 key; the same two methods as
// handshake.StaticKey, declared here so this package needs only them.
type StaticKey interface {
	Public() handshake.PublicKey
	// SharedSecret is X25519(static private, peer). Errors: token failures.
	SharedSecret(peer handshake.PublicKey) ([32]byte, error)
}

const (
	// Version is the format this package writes and the newest it reads.
	Version = 1
	// MaxPayload bounds what Save writes and Take reads (a payload of
	// thousands of sessions with the largest replay windows fits).
	MaxPayload = 256 << 20

	magic      = "STUNSTAT"
	headerSize = 60
	overhead   = headerSize + chacha20poly1305.Overhead
	flagClean  = 1 << 0
	infoKey    = "stunnel state v1"
	infoKeyID  = "stunnel state key id v1"
)

// Errors Take returns for a file it refuses. Each wraps ErrRefused, and Take
// has moved the file aside (to path + ".refused") before returning them.
var (
	ErrRefused   = errors.New("state file refused")
	ErrCorrupt   = fmt.Errorf("%w: not a stunnel state file or truncated", ErrRefused)
	ErrNewer     = fmt.Errorf("%w: written by a newer stunnel (format version above %d)", ErrRefused, Version)
	ErrOtherKey  = fmt.Errorf("%w: sealed under another host's static key", ErrRefused)
	ErrTampered  = fmt.Errorf("%w: authentication failed (modified or damaged)", ErrRefused)
	ErrTooLarge  = fmt.Errorf("%w: larger than %d bytes", ErrRefused, MaxPayload+overhead)
	errKeyFailed = errors.New("deriving the state key from the static key failed")
)

// Payload is what a state file carries.
type Payload struct {
	// Data is opaque to this package.
	Data []byte
	// CleanStop is true when the state was written after the data plane had
	// stopped sealing, so its counters are exact. Only such a state may
	// restore sessions; a state saved on request while running may restore
	// tickets only.
	CleanStop bool
	// Written is when Save sealed it (set by Save; ignored on input).
	Written time.Time
}

func (p *Payload) text() string {
	return fmt.Sprintf("(state payload of %d bytes, clean stop %v: not shown)", len(p.Data), p.CleanStop)
}

// Format prints the payload's size, never its bytes: the sessions in it
// hold their keys.
func (p Payload) Format(f fmt.State, _ rune) { io.WriteString(f, p.text()) }

// MarshalText keeps encoders from writing the payload (encoding/json
// would write Data in base64).
func (p Payload) MarshalText() ([]byte, error) { return []byte(p.text()), nil }

// deriveKey returns the sealing key and the key ID for key. The secret is
// X25519(priv, pub(priv)): fixed for this host, computable only with the
// private key, and a token computes it like any other shared secret.
func deriveKey(key StaticKey) (aeadKey [32]byte, keyID [16]byte, err error) {
	pub := key.Public()
	secret, err := key.SharedSecret(pub)
	if err != nil {
		return aeadKey, keyID, fmt.Errorf("%w: %w", errKeyFailed, err)
	}
	defer clear(secret[:])
	if _, err := io.ReadFull(hkdf.New(sha256.New, secret[:], pub[:], []byte(infoKey)), aeadKey[:]); err != nil {
		return aeadKey, keyID, fmt.Errorf("%w: %w", errKeyFailed, err)
	}
	h := sha256.New()
	h.Write([]byte(infoKeyID))
	h.Write(pub[:])
	copy(keyID[:], h.Sum(nil))
	return aeadKey, keyID, nil
}

// Seal returns the file bytes for p under key.
func Seal(key StaticKey, p Payload, now time.Time) ([]byte, error) {
	if len(p.Data) > MaxPayload {
		return nil, fmt.Errorf("state payload of %d bytes is larger than the maximum %d", len(p.Data), MaxPayload)
	}
	k, id, err := deriveKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(k[:])
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		return nil, fmt.Errorf("state file cipher: %w", err)
	}
	out := make([]byte, headerSize, headerSize+len(p.Data)+chacha20poly1305.Overhead)
	copy(out, magic)
	out[8] = Version
	if p.CleanStop {
		out[9] = flagClean
	}
	binary.LittleEndian.PutUint64(out[12:], uint64(now.UnixNano()))
	copy(out[20:36], id[:])
	if _, err := rand.Read(out[36:headerSize]); err != nil {
		return nil, fmt.Errorf("state file nonce: %w", err)
	}
	return aead.Seal(out, out[36:headerSize], p.Data, out[:headerSize]), nil
}

// Open authenticates file bytes under key. Errors wrap ErrRefused (with the
// reason) or come from the key (a token failure).
func Open(key StaticKey, b []byte) (Payload, error) {
	if len(b) < overhead || string(b[:8]) != magic {
		return Payload{}, ErrCorrupt
	}
	if b[8] > Version {
		return Payload{}, ErrNewer
	}
	if b[8] != Version || b[9]&^flagClean != 0 || b[10] != 0 || b[11] != 0 {
		return Payload{}, ErrCorrupt
	}
	k, id, err := deriveKey(key)
	if err != nil {
		return Payload{}, err
	}
	defer clear(k[:])
	// The key ID is public (a hash of the public key), so a plain compare is
	// fine; it only lets the error tell "another host" from "tampered".
	if string(b[20:36]) != string(id[:]) {
		return Payload{}, ErrOtherKey
	}
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		return Payload{}, fmt.Errorf("state file cipher: %w", err)
	}
	data, err := aead.Open(nil, b[36:headerSize], b[headerSize:], b[:headerSize])
	if err != nil {
		return Payload{}, ErrTampered
	}
	return Payload{
		Data:      data,
		CleanStop: b[9]&flagClean != 0,
		Written:   time.Unix(0, int64(binary.LittleEndian.Uint64(b[12:]))),
	}, nil
}

// Save seals p and writes it to path atomically and durably
// (fsdir.WriteFile): after Save returns nil the state survives a power
// loss. On an error before the rename an older state file at path stays
// as it was; if only the directory's fsync fails, the new file is in place
// (the next start may restore it), but a power loss may still bring the
// old one back, and the error says the state is written (fsdir.ErrDirSync
// is in its chain).
func Save(path string, key StaticKey, p Payload) error {
	b, err := Seal(key, p, time.Now())
	if err != nil {
		return fmt.Errorf("saving state to %s: %w", path, err)
	}
	if err := fsdir.WriteFileSyncDir(path, b, syncDir); err != nil {
		if errors.Is(err, fsdir.ErrDirSync) {
			return fmt.Errorf("state written to %s, but a crash may lose it: %w", path, err)
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("saving state to %s: %w (does the state directory exist and is it writable?)", path, err)
		}
		return fmt.Errorf("saving state to %s: %w", path, err)
	}
	return nil
}

// syncDir is fsdir.Sync; a variable so that a test can make the last step
// of Save fail. Only tests set it, before the calls they check.
var syncDir = fsdir.Sync

// Take restores the state at path exactly once. It claims the file (rename
// to a unique name), reads and authenticates it, unlinks it and fsyncs the
// directory, and only then returns the payload.
//
// A missing file returns an error satisfying errors.Is(err, fs.ErrNotExist):
// a fresh start. A file that fails to open is moved to path + ".refused"
// (replacing an older one) and the error, wrapping ErrRefused and naming the
// reason, says so; the caller logs it and starts with fresh handshakes. If
// the state cannot be removed for good, Take returns an error and no payload:
// a state that might be read again must not be restored.
func Take(path string, key StaticKey) (Payload, error) {
	dir := filepath.Dir(path)
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return Payload{}, fmt.Errorf("taking state %s: %w", path, err)
	}
	claim := fmt.Sprintf("%s.take-%x", path, suffix)
	if err := os.Rename(path, claim); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Payload{}, fmt.Errorf("no saved state at %s: %w", path, fs.ErrNotExist)
		}
		return Payload{}, fmt.Errorf("taking state %s: %w", path, err)
	}
	b, readErr := readBounded(claim)
	var p Payload
	openErr := readErr
	if openErr == nil {
		p, openErr = Open(key, b)
	}
	if openErr != nil {
		aside := path + ".refused"
		if err := os.Rename(claim, aside); err != nil {
			os.Remove(claim)
			aside = "(removed)"
		}
		fsdir.Sync(dir) // best effort: the claim rename already took it out of path
		clear(p.Data)
		return Payload{}, fmt.Errorf("state file %s not restored, moved to %s; starting with fresh handshakes: %w", path, aside, openErr)
	}
	if err := os.Remove(claim); err != nil {
		clear(p.Data)
		return Payload{}, fmt.Errorf("state file %s not restored: cannot remove it (%w); starting with fresh handshakes", path, err)
	}
	if err := fsdir.Sync(dir); err != nil {
		clear(p.Data)
		return Payload{}, fmt.Errorf("state file %s not restored: its removal is not durable (%w); starting with fresh handshakes", path, err)
	}
	return p, nil
}

// readBounded reads the claimed file. A symbolic link is refused, not
// followed: Take's rename and unlink would consume the link and leave the
// state it points to on disk, to be restored again (through a link made
// anew, or at its own path), its counters sealed twice.
func readBounded(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%w: a symbolic link, which removing would not consume the state it points to; "+
			"give state_file a file of its own", ErrRefused)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrCorrupt)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxPayload+overhead+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPayload+overhead {
		return nil, ErrTooLarge
	}
	return b, nil
}
