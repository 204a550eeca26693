package tickets

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
)

// A ticket key as a gateway group keeps it in etcd ([tickets] ring =
// "etcd"), at PREFIX tickets/NAME (NAME: the key name in hex). The value is
// sealed under the group secret, so etcd, its backups and anyone who reads
// them never see a ticket key.
//
// Record layout (version 1), 97 bytes:
//
//	0   1   record version, 1
//	1   24  nonce, random per record
//	25  72  XChaCha20-Poly1305(record key, nonce, ad, plaintext)
//
// record key = BLAKE2s-256(key = group secret, "stunnel ticket-key record v1")
// ad         = version || key name (16) || etcd prefix: a record moved to
// another name or another group's prefix does not open.
// plaintext (56 bytes): secret (32) || created (Unix ns) || encrypt-decrypt
// lifetime (ns) || decrypt-only lifetime (ns), integers signed little-endian.
const (
	recordVersion  = 1
	recordPlainLen = SecretSize + 3*8
	// RecordSize is the length of a sealed ticket-key record.
	RecordSize = 1 + chacha20poly1305.NonceSizeX + recordPlainLen + chacha20poly1305.Overhead
	// MaxRecordLifetime bounds each lifetime a record may carry (a year):
	// a forged or corrupt duration cannot keep a key alive for ever.
	MaxRecordLifetime = 366 * 24 * time.Hour
)

var recordLabel = []byte("stunnel ticket-key record v1")

// ErrRecordInvalid: a ticket-key record did not open (another group secret,
// another name or prefix, tampered, or malformed).
var ErrRecordInvalid = errors.New("ticket-key record does not open under this group secret")

func (g *GroupSecret) recordAEAD() (cipher.AEAD, error) {
	mac, err := blake2s.New256(g.b[:])
	if err != nil {
		return nil, err
	}
	mac.Write(recordLabel)
	var k [32]byte
	defer clear(k[:])
	mac.Sum(k[:0])
	return chacha20poly1305.NewX(k[:])
}

func recordAD(name [NameSize]byte, prefix string) []byte {
	ad := make([]byte, 0, 1+NameSize+len(prefix))
	ad = append(ad, recordVersion)
	ad = append(ad, name[:]...)
	return append(ad, prefix...)
}

// SealRecord seals k for etcd under g, bound to k's name and prefix (rng
// nil: crypto/rand).
func SealRecord(g *GroupSecret, prefix string, k *Key, rng io.Reader) ([]byte, error) {
	if k.IsErased() {
		return nil, errors.New("ticket key has an all-zero secret")
	}
	if k.EncryptDecrypt <= 0 || k.DecryptOnly <= 0 || k.EncryptDecrypt > MaxRecordLifetime || k.DecryptOnly > MaxRecordLifetime {
		return nil, fmt.Errorf("ticket key %s: lifetimes %v and %v must be positive and at most %v", k.NameHex(), k.EncryptDecrypt, k.DecryptOnly, MaxRecordLifetime)
	}
	aead, err := g.recordAEAD()
	if err != nil {
		return nil, fmt.Errorf("ticket-key record: %w", err)
	}
	var plain [recordPlainLen]byte
	defer clear(plain[:])
	copy(plain[:], k.secret[:])
	binary.LittleEndian.PutUint64(plain[SecretSize:], uint64(k.Created.UnixNano()))
	binary.LittleEndian.PutUint64(plain[SecretSize+8:], uint64(k.EncryptDecrypt))
	binary.LittleEndian.PutUint64(plain[SecretSize+16:], uint64(k.DecryptOnly))
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, RecordSize)
	out[0] = recordVersion
	if rng == nil {
		rng = rand.Reader
	}
	if _, err := io.ReadFull(rng, out[1:]); err != nil {
		return nil, fmt.Errorf("ticket-key record nonce: reading randomness: %w", err)
	}
	return aead.Seal(out, out[1:], plain[:], recordAD(k.Name, prefix)), nil
}

// OpenRecord opens the record stored under key name at prefix. Errors
// (wrapping ErrRecordInvalid) say what is wrong and never hold a secret.
func OpenRecord(g *GroupSecret, prefix string, name [NameSize]byte, data []byte) (Key, error) {
	if len(data) != RecordSize || data[0] != recordVersion {
		return Key{}, fmt.Errorf("%w: %d bytes with version %d, want %d bytes with version %d",
			ErrRecordInvalid, len(data), firstByte(data), RecordSize, recordVersion)
	}
	aead, err := g.recordAEAD()
	if err != nil {
		return Key{}, fmt.Errorf("ticket-key record: %w", err)
	}
	var buf [recordPlainLen]byte
	defer clear(buf[:])
	n := 1 + chacha20poly1305.NonceSizeX
	plain, err := aead.Open(buf[:0], data[1:n], data[n:], recordAD(name, prefix))
	if err != nil {
		return Key{}, fmt.Errorf("%w: authentication failed (another group secret, name or prefix, or tampered)", ErrRecordInvalid)
	}
	k := Key{Name: name}
	copy(k.secret[:], plain[:SecretSize])
	k.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(plain[SecretSize:])))
	k.EncryptDecrypt = time.Duration(binary.LittleEndian.Uint64(plain[SecretSize+8:]))
	k.DecryptOnly = time.Duration(binary.LittleEndian.Uint64(plain[SecretSize+16:]))
	switch {
	case k.IsErased():
		return Key{}, fmt.Errorf("%w: key %s has an all-zero secret", ErrRecordInvalid, k.NameHex())
	case k.EncryptDecrypt <= 0 || k.DecryptOnly <= 0 || k.EncryptDecrypt > MaxRecordLifetime || k.DecryptOnly > MaxRecordLifetime:
		k.Erase()
		return Key{}, fmt.Errorf("%w: key %s has lifetimes out of range", ErrRecordInvalid, k.NameHex())
	}
	return k, nil
}

// SetExternalKeys puts the ring in externally managed mode (as a key file
// does: it generates no key) and replaces its keys with copies of keys,
// skipping those past their decrypt-only life; the caller keeps (and
// erases) its own copies. The used-ticket cache is kept, so a ticket used
// once stays refused across any number of replacements. A closed ring
// takes nothing: a sync still running at the stop may call this after
// Close, and its keys would never be erased.
func (r *Ring) SetExternalKeys(keys []Key) {
	now := r.opt.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for _, k := range r.keys {
		k.Erase()
	}
	r.keys = nil
	r.fromFile = true
	for i := range keys {
		if keys[i].State(now) == KeyExpired || keys[i].IsErased() {
			continue
		}
		k := keys[i]
		r.addLocked(&k)
	}
}

// SetNoKeyHint sets what NoKeyError tells the operator to do when no key
// seals, for rings whose keys come from elsewhere than a key file.
func (r *Ring) SetNoKeyHint(hint string) {
	r.mu.Lock()
	r.noKeyFix = hint
	r.mu.Unlock()
}
