package handshake

import (
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
)

// mac1Key is BLAKE2s-256("mac1----" || receiver's static public key).
func mac1Key(receiver PublicKey) [32]byte { return labelledKey(labelMAC1, receiver) }

// cookieKey is BLAKE2s-256("cookie--" || responder's static public key).
func cookieKey(responder PublicKey) [32]byte { return labelledKey(labelCookie, responder) }

func labelledKey(label string, pub PublicKey) [32]byte {
	var in [len(labelMAC1) + KeySize]byte // both labels are 8 bytes
	copy(in[:], label)
	copy(in[len(label):], pub[:])
	return blake2s.Sum256(in[:])
}

// mac is keyed BLAKE2s-128 (key of 1..32 bytes).
func mac(dst []byte, key []byte, data []byte) {
	h, _ := blake2s.New128(key) // fails only for key lengths we never pass
	h.Write(data)
	h.Sum(dst[:0])
}

// macOffsets finds mac1 and mac2 of a handshake message that carries them.
func macOffsets(msg []byte) (mac1, mac2 int, ok bool) {
	typ, ok := MessageType(msg)
	switch {
	case ok && typ == MessageTypeInitiation && len(msg) == InitiationSize:
		return initOffMAC1, initOffMAC2, true
	case ok && typ == MessageTypeResponse && len(msg) == ResponseSize:
		return respOffMAC1, respOffMAC2, true
	case ok:
		return resumptionMACOffsets(msg, typ)
	}
	return 0, 0, false
}

func checkMAC1(key *[32]byte, msg []byte, off int) bool {
	var want [macLen]byte
	mac(want[:], key[:], msg[:off])
	return subtle.ConstantTimeCompare(want[:], msg[off:off+macLen]) == 1
}

// addrBytes is what a cookie binds: the IP (4 bytes for IPv4, also when
// 4-in-6 mapped; 16 for IPv6) then the port, big-endian.
func addrBytes(dst *[18]byte, src netip.AddrPort) []byte {
	ip := src.Addr().Unmap()
	n := 4
	if ip.Is4() {
		a := ip.As4()
		copy(dst[:], a[:])
	} else {
		a := ip.As16()
		copy(dst[:], a[:])
		n = 16
	}
	dst[n], dst[n+1] = byte(src.Port()>>8), byte(src.Port())
	return dst[:n+2]
}

// CookieChecker is the responder side of the DoS defence, one per interface.
// It checks mac1 before any X25519 work, and under load mac2, which proves
// the sender receives packets at its source address. Safe for concurrent use.
type CookieChecker struct {
	mac1Key   [32]byte    // immutable
	cookieKey cipher.AEAD // immutable; XChaCha20-Poly1305, safe for concurrent use
	now       func() time.Time
	rand      io.Reader // used under mu only

	mu        sync.RWMutex
	secret    [32]byte  // guarded by mu: keys cookies; replaced every CookieSecretLifetime
	secretSet time.Time // guarded by mu; zero until the first cookie is made
}

// NewCookieChecker makes the checker for our static public key. now and rand
// may be nil (time.Now, crypto/rand).
func NewCookieChecker(local PublicKey, now func() time.Time, rand io.Reader) *CookieChecker {
	c := &CookieChecker{mac1Key: mac1Key(local), now: now, rand: rand}
	ck := cookieKey(local)
	c.cookieKey, _ = chacha20poly1305.NewX(ck[:]) // fails only on a wrong key length
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = (&Config{}).rand()
	}
	return c
}

// CheckMAC1 reports whether msg is a well-formed initiation, response or
// resumption message (types 1, 2, 5, 6) whose
// mac1 is keyed by our public key. It costs one BLAKE2s over the message.
func (c *CookieChecker) CheckMAC1(msg []byte) bool {
	off, _, ok := macOffsets(msg)
	return ok && checkMAC1(&c.mac1Key, msg, off)
}

// CheckMAC2 reports whether msg carries a mac2 made with a cookie we issued to
// src under the current secret. It does not check mac1; call CheckMAC1 first.
func (c *CookieChecker) CheckMAC2(msg []byte, src netip.AddrPort) bool {
	_, off, ok := macOffsets(msg)
	if !ok {
		return false
	}
	var cookie [cookieLen]byte
	c.mu.RLock()
	fresh := !c.secretSet.IsZero() && c.now().Sub(c.secretSet) < CookieSecretLifetime
	if fresh {
		c.cookieLocked(&cookie, src)
	}
	c.mu.RUnlock()
	if !fresh {
		return false // every cookie made under an expired secret is invalid
	}
	var want [macLen]byte
	mac(want[:], cookie[:], msg[:off])
	return subtle.ConstantTimeCompare(want[:], msg[off:off+macLen]) == 1
}

func (c *CookieChecker) cookieLocked(dst *[cookieLen]byte, src netip.AddrPort) {
	var buf [18]byte
	mac(dst[:], c.secret[:], addrBytes(&buf, src))
}

// CreateReply answers msg (an initiation whose mac1 was checked) with a cookie
// for src, sealed so only the holder of the initiation's mac1 can open it.
func (c *CookieChecker) CreateReply(msg []byte, src netip.AddrPort) ([]byte, error) {
	off, _, ok := macOffsets(msg)
	if !ok {
		return nil, malformed("cookie reply requested for a message without MACs")
	}
	reply := make([]byte, HeaderLen+nonce24Len, CookieReplySize)
	putHeader(reply, MessageTypeCookieReply)
	var cookie [cookieLen]byte
	c.mu.Lock()
	now := c.now()
	if c.secretSet.IsZero() || now.Sub(c.secretSet) >= CookieSecretLifetime || now.Before(c.secretSet) {
		if _, err := io.ReadFull(c.rand, c.secret[:]); err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("cookie secret: reading randomness: %w", err)
		}
		c.secretSet = now
	}
	c.cookieLocked(&cookie, src)
	_, err := io.ReadFull(c.rand, reply[cookieOffNonce:cookieOffSealed])
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("cookie reply nonce: reading randomness: %w", err)
	}
	reply = c.cookieKey.Seal(reply, reply[cookieOffNonce:cookieOffSealed], cookie[:], msg[off:off+macLen])
	clear(cookie[:])
	return reply, nil
}

// CookieGenerator is the initiator side, one per peer: it fills mac1 (keyed by
// the peer's public key) and mac2 (keyed by the last cookie the peer sent us).
// Safe for concurrent use.
type CookieGenerator struct {
	mac1Key   [32]byte    // immutable
	cookieKey cipher.AEAD // immutable
	now       func() time.Time

	mu          sync.Mutex
	cookie      [cookieLen]byte // guarded by mu
	cookieAt    time.Time       // guarded by mu; zero: no cookie
	lastMAC1    [macLen]byte    // guarded by mu: mac1 of the last message sent, the AAD of its cookie reply
	hasLastMAC1 bool            // guarded by mu; a reply is accepted once per message sent
}

// NewCookieGenerator makes the generator for messages to remote. now may be nil.
func NewCookieGenerator(remote PublicKey, now func() time.Time) *CookieGenerator {
	g := &CookieGenerator{mac1Key: mac1Key(remote), now: now}
	ck := cookieKey(remote)
	g.cookieKey, _ = chacha20poly1305.NewX(ck[:])
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

// AddMACs fills mac1, and mac2 if a cookie younger than CookieLifetime is
// held (else mac2 is zero), in place. msg must be an initiation or a response;
// anything else is left untouched.
func (g *CookieGenerator) AddMACs(msg []byte) {
	off1, off2, ok := macOffsets(msg)
	if !ok {
		return
	}
	mac(msg[off1:off1+macLen], g.mac1Key[:], msg[:off1])
	g.mu.Lock()
	defer g.mu.Unlock()
	copy(g.lastMAC1[:], msg[off1:off1+macLen])
	g.hasLastMAC1 = true
	if age := g.now().Sub(g.cookieAt); g.cookieAt.IsZero() || age >= CookieLifetime || age < 0 {
		clear(msg[off2 : off2+macLen])
		return
	}
	mac(msg[off2:off2+macLen], g.cookie[:], msg[:off2])
}

// ConsumeReply opens a cookie reply to the last message sent and keeps the
// cookie for the next AddMACs. The caller then resends (a fresh initiation).
func (g *CookieGenerator) ConsumeReply(msg []byte) error {
	if err := checkMessage(msg, MessageTypeCookieReply, CookieReplySize, "cookie reply"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.hasLastMAC1 {
		return ErrNoCookieWaiting
	}
	var cookie [cookieLen]byte
	if _, err := g.cookieKey.Open(cookie[:0], msg[cookieOffNonce:cookieOffSealed], msg[cookieOffSealed:], g.lastMAC1[:]); err != nil {
		return ErrBadCookie
	}
	g.cookie = cookie
	g.cookieAt = g.now()
	g.hasLastMAC1 = false
	return nil
}
