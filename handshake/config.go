package handshake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
)

// PeerInfo is what a host knows about one peer.
type PeerInfo struct {
	PublicKey    PublicKey
	PresharedKey PresharedKey // zero: none (the handshake then mixes an all-zero PSK)
	// ID is optional: an initiator copies it to Session.PeerID; lookups may leave it empty.
	ID string
}

// PeerLookup finds a peer by the ID it claims. It returns an error wrapping
// ErrUnknownPeer when the ID is not configured. It must be safe for concurrent use.
type PeerLookup interface {
	LookupPeer(peerID []byte) (PeerInfo, error)
}

// Config is one host's handshake identity and policy. It is read, never
// written, by this package, so one Config may be shared by all handshakes.
type Config struct {
	PeerID      []byte           // our ID, as our peers know it: 1..MaxPeerIDLen bytes
	PrivateKey  PrivateKey       // our static X25519 key
	Cipher      CipherPreference // the `cipher` config key
	Peers       PeerLookup       // responder side: who may initiate to us
	Now         func() time.Time // nil: time.Now
	Rand        io.Reader        // nil: crypto/rand
	AESHardware func() bool      // nil: HasAESHardware

	// Static, when set, is our static key instead of PrivateKey (e.g. a key
	// in a PKCS#11 token): every static-key DH is a Static.SharedSecret call.
	// It must be safe for concurrent use.
	Static StaticKey
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) aesHardware() bool {
	if c.AESHardware != nil {
		return c.AESHardware()
	}
	return HasAESHardware()
}

// ValidatePeerID checks that an ID fits the wire: non-empty, at most MaxPeerIDLen bytes.
func ValidatePeerID(id []byte) error {
	if len(id) == 0 {
		return fmt.Errorf("peer ID is empty")
	}
	if len(id) > MaxPeerIDLen {
		return fmt.Errorf("peer ID is %d bytes, at most %d allowed", len(id), MaxPeerIDLen)
	}
	return nil
}

// Session is the result of a finished handshake.
type Session struct {
	PeerID    string // the remote peer's ID (as claimed and proven in message 1, or as configured for an initiator)
	Initiator bool   // we sent message 1
	SendKey   [32]byte
	RecvKey   [32]byte
	Cipher    Cipher
	// SessionID is derived from the whole transcript: neither side chooses it.
	SessionID [32]byte
	// LocalIndex is what the peer puts in packets to us; RemoteIndex is what we put in packets to it.
	LocalIndex, RemoteIndex uint32
	// ResumptionSecret seeds the next session ticket (handshake/resumption.go).
	// Both sides derive the same value; it is never a data key.
	ResumptionSecret [32]byte
	// Resumed: this session came from a ticket (messages 5/6), not message 1/2.
	Resumed bool
	// PeerStatic is, on the responder of a full handshake, the initiator's
	// static public key that message 1 proved (zero otherwise).
	// session.Peer.Accept takes the session only if the peer still has
	// this key: the lookup may have changed since (a reload that replaced
	// the key).
	PeerStatic PublicKey
	// PSKTag is, on the responder (full or resumed), the Tag of the
	// pre-shared key the handshake was made under: the one the lookup
	// gave for PeerID (zero otherwise). session.Peer.Accept takes the
	// session only if the peer still has that pre-shared key, as for
	// PeerStatic. Not secret: Zero leaves it.
	PSKTag [32]byte
}

// Zero overwrites the keys. Call it when the session is retired.
func (s *Session) Zero() {
	s.SendKey = [32]byte{}
	s.RecvKey = [32]byte{}
	s.SessionID = [32]byte{}
	s.ResumptionSecret = [32]byte{}
}

// NewAEAD builds the data-plane AEAD for a session key. The AEAD copies the key,
// so the caller may zero key afterwards.
func NewAEAD(c Cipher, key *[32]byte) (cipher.AEAD, error) {
	switch c {
	case CipherChaCha20Poly1305:
		return chacha20poly1305.New(key[:])
	case CipherAES256GCM:
		b, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, fmt.Errorf("aes256gcm: %w", err)
		}
		return cipher.NewGCM(b)
	}
	return nil, fmt.Errorf("no data-plane AEAD for %v", c)
}

// localKeys are what a static private key implies: its public key and the mac1
// key of messages sent to it. Deriving the public key is an X25519 operation,
// so it is cached process-wide (keyed by a hash, not the private key itself).
type localKeys struct {
	pub     PublicKey
	mac1Key [32]byte
}

var localKeyCache struct {
	mu sync.Mutex
	m  map[[32]byte]localKeys // guarded by mu; reset when it reaches 64 entries
}

func deriveLocalKeys(priv *PrivateKey) localKeys {
	id := blake2s.Sum256(priv[:])
	localKeyCache.mu.Lock()
	lk, ok := localKeyCache.m[id]
	localKeyCache.mu.Unlock()
	if ok {
		return lk
	}
	lk.pub = priv.PublicKey()
	lk.mac1Key = mac1Key(lk.pub)
	localKeyCache.mu.Lock()
	if localKeyCache.m == nil || len(localKeyCache.m) >= 64 {
		localKeyCache.m = make(map[[32]byte]localKeys)
	}
	localKeyCache.m[id] = lk
	localKeyCache.mu.Unlock()
	return lk
}
