package directory

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/internal/fsdir"
)

// StaticKey is the part of this host's static key the disk cache needs;
// the same two methods as handshake.StaticKey (COMMON interface), declared
// here so a PKCS#11 key fits once it lands.
type StaticKey interface {
	Public() handshake.PublicKey
	SharedSecret(peer handshake.PublicKey) ([32]byte, error)
}

// MemoryKey adapts an in-memory private key. The caller keeps ownership
// of priv and zeroes it when done.
func MemoryKey(priv *handshake.PrivateKey) StaticKey { return memoryKey{priv} }

type memoryKey struct{ priv *handshake.PrivateKey }

func (k memoryKey) Public() handshake.PublicKey { return k.priv.PublicKey() }

func (k memoryKey) SharedSecret(peer handshake.PublicKey) ([32]byte, error) {
	var out [32]byte
	s, err := curve25519.X25519(k.priv[:], peer[:])
	if err != nil {
		return out, err
	}
	copy(out[:], s)
	clear(s)
	return out, nil
}

// cacheMagic starts a sealed cache file and is its AEAD additional data,
// so a file of another kind (a state file sealed the same way) never opens
// as a directory.
var cacheMagic = []byte("stunnel-directory-cache-v1\n")

// maxCacheFile bounds what we read back: a directory of MaxRecords records
// of MaxRecordSize bytes each, as saveCache writes it (about 212 MiB; a
// typical record of ~300 bytes takes ~450), plus its prefix (cacheLimit).
// A bound still: a file is read whole into memory before it is opened.
const maxCacheFile = cacheFraming + MaxRecords*maxCachedRecord

// maxCachedRecord is one record as the cache's JSON holds it at most:
// the ID quoted, each of its bytes escaped to six at worst (\u003c for a
// "<", \ufffd for a byte of invalid UTF-8: setLocked keeps any ID of up
// to conf.MaxPeerIDLen bytes), a colon, the record's base64 quoted, and a
// comma.
const maxCachedRecord = 2 + 6*conf.MaxPeerIDLen + 1 + 2 + (MaxRecordSize+2)/3*4 + 1

// cacheFraming is room for what surrounds the records: the magic, nonce
// and tag, and the JSON object's other fields but the prefix.
const cacheFraming = 4 << 10

// cacheLimit is the largest cache file read back for prefix: maxCacheFile,
// plus the prefix escaped at worst.
func cacheLimit(prefix string) int { return maxCacheFile + 6*len(prefix) }

// snapshot is what the cache file holds: the raw records at a revision, so
// reading it back applies the same validation as reading etcd.
type snapshot struct {
	Prefix   string            `json:"prefix"`
	Revision int64             `json:"revision"`
	Records  map[string][]byte `json:"records"` // peer ID -> record bytes
}

// cacheKey derives the sealing key: X25519 of our static key with our own
// public key is a secret only this host's private key yields, and HKDF
// binds it to this use.
func cacheKey(k StaticKey) ([]byte, error) {
	s, err := k.SharedSecret(k.Public())
	if err != nil {
		return nil, fmt.Errorf("deriving the directory cache key: %w", err)
	}
	defer clear(s[:])
	return hkdf.Key(sha256.New, s[:], nil, "stunnel directory cache v1", chacha20poly1305.KeySize)
}

// saveCache seals snap to path at mode 0600, atomically (fsdir.WriteFile):
// a crash or a failed write leaves the old file or the new one, never half
// of one.
func saveCache(path string, k StaticKey, snap *snapshot) error {
	plain, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	key, err := cacheKey(k)
	if err != nil {
		return err
	}
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return err
	}
	out := make([]byte, 0, len(cacheMagic)+aead.NonceSize()+len(plain)+aead.Overhead())
	out = append(out, cacheMagic...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out = append(out, nonce...)
	out = aead.Seal(out, nonce, plain, cacheMagic)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("directory cache %s: %w", path, err)
	}
	if err := fsdir.WriteFile(path, out); err != nil {
		return fmt.Errorf("directory cache %s: %w", path, err)
	}
	return nil
}

// loadCache reads back what saveCache wrote, for this prefix.
func loadCache(path string, k StaticKey, prefix string) (*snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := cacheKey(k)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return openCache(data, key, prefix)
}

// openCache authenticates and decodes a cache file; every byte of it is
// untrusted until the AEAD says otherwise (FuzzOpenCache).
func openCache(data, key []byte, prefix string) (*snapshot, error) {
	if len(data) > cacheLimit(prefix) {
		return nil, fmt.Errorf("directory cache file is %d bytes, more than %d (%d records of %d bytes)",
			len(data), cacheLimit(prefix), MaxRecords, MaxRecordSize)
	}
	rest, ok := bytes.CutPrefix(data, cacheMagic)
	if !ok {
		return nil, errors.New("not a directory cache file")
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("directory cache file is truncated")
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], cacheMagic)
	if err != nil {
		return nil, errors.New("directory cache file does not open with this host's key (another host's, or damaged)")
	}
	var snap snapshot
	if err := json.Unmarshal(plain, &snap); err != nil {
		return nil, fmt.Errorf("directory cache file is damaged: %v", err)
	}
	if snap.Prefix != prefix {
		return nil, fmt.Errorf("directory cache file is for prefix %q, not %q", snap.Prefix, prefix)
	}
	return &snap, nil
}

// loadDiskCache fills the copy from the disk cache, if there is one that
// opens, until etcd answers.
func (d *Directory) loadDiskCache() {
	if d.opt.CacheFile == "" || d.opt.Key == nil {
		return
	}
	snap, err := loadCache(d.opt.CacheFile, d.opt.Key, d.opt.Prefix)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("directory: not using the disk cache", "file", d.opt.CacheFile, "err", err.Error())
		}
		return
	}
	d.mu.Lock()
	for id, b := range snap.Records {
		// A cache an older stunnel saved may hold deeper keys as records.
		if key := PeerKey(d.opt.Prefix, id); CheckRecordID(id) == nil {
			d.setLocked(key, id, b, snap.Revision)
		}
	}
	d.state.Source, d.state.Revision = "cache", snap.Revision
	d.mu.Unlock()
	d.log.Info("directory: loaded the disk cache until etcd answers", "file", d.opt.CacheFile, "revision", snap.Revision, "peers", len(snap.Records))
	d.changed()
}

// saver writes the disk cache, coalesced like OnChange (a burst of puts
// costs one write) and apart from it, so a slow disk never delays a change
// reaching the data plane.
func (d *Directory) saver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.save:
			d.saveDiskCache()
		}
	}
}

// saveDiskCache seals the copy's records to the disk cache.
func (d *Directory) saveDiskCache() {
	if d.opt.CacheFile == "" || d.opt.Key == nil {
		return
	}
	d.mu.Lock()
	if d.state.Source != "etcd" {
		d.mu.Unlock()
		return // nothing newer than the file itself
	}
	snap := &snapshot{Prefix: d.opt.Prefix, Revision: d.state.Revision, Records: make(map[string][]byte, len(d.raw))}
	for id, b := range d.raw {
		snap.Records[id] = b
	}
	d.mu.Unlock()
	err := saveCache(d.opt.CacheFile, d.opt.Key, snap)
	d.cacheStale.Store(err != nil) // the next relist writes again (replace)
	if err != nil {
		d.log.Warn("directory: cannot save the disk cache", "err", err.Error())
	}
}
