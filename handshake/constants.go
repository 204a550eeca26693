package handshake

import "time"

// Wire constants. docs/PROTOCOL.md describes every one of them; a change here
// is a change of the protocol and needs a new ProtocolVersion.

// ProtocolVersion is byte 1 of every message.
const ProtocolVersion = 1

// Message types, byte 0 of every message.
const (
	MessageTypeInitiation  = 1
	MessageTypeResponse    = 2
	MessageTypeCookieReply = 3
	MessageTypeData        = 4
	// Session resumption (handshake/resumption.go). A new session ticket is
	// not a message type: it travels inside a data packet (TicketMessage).
	MessageTypeResumptionInitiation = 5
	MessageTypeResumptionResponse   = 6
)

// HeaderLen is the common header: type, version, two reserved zero bytes.
const HeaderLen = 4

// MaxPeerIDLen is the longest peer ID that fits in an initiation. The field is
// always padded to this length, so the length of the ID is not visible on the wire.
const MaxPeerIDLen = 64

const (
	keyLen     = 32 // X25519 public key, symmetric keys
	TagSize    = 16 // AEAD tag (Poly1305, GCM)
	macLen     = 16 // mac1, mac2, cookie
	indexLen   = 4
	tai64nLen  = 12
	cookieLen  = 16
	nonce24Len = 24
)

// Initiation (message 1): header | ephemeral | sealed static | sealed payload | mac1 | mac2.
const (
	initPayloadLen = indexLen + tai64nLen + 1 + 1 + MaxPeerIDLen // 82

	initOffEphemeral = HeaderLen                                 // 4
	initOffStatic    = initOffEphemeral + keyLen                 // 36
	initOffPayload   = initOffStatic + keyLen + TagSize          // 84
	initOffMAC1      = initOffPayload + initPayloadLen + TagSize // 182
	initOffMAC2      = initOffMAC1 + macLen                      // 198

	// InitiationSize is the exact length of message 1.
	InitiationSize = initOffMAC2 + macLen // 214
)

// Offsets inside the initiation's plaintext payload.
const (
	ipOffSender    = 0
	ipOffTimestamp = 4
	ipOffCiphers   = 16
	ipOffIDLen     = 17
	ipOffID        = 18
)

// Response (message 2): header | receiver index | ephemeral | sealed payload | mac1 | mac2.
const (
	respPayloadLen = indexLen + 1 + 1 // 6

	respOffReceiver  = HeaderLen                                 // 4
	respOffEphemeral = respOffReceiver + indexLen                // 8
	respOffPayload   = respOffEphemeral + keyLen                 // 40
	respOffMAC1      = respOffPayload + respPayloadLen + TagSize // 62
	respOffMAC2      = respOffMAC1 + macLen                      // 78

	// ResponseSize is the exact length of message 2.
	ResponseSize = respOffMAC2 + macLen // 94
)

// Cookie reply: header | nonce | sealed cookie.
const (
	cookieOffNonce  = HeaderLen                   // 4
	cookieOffSealed = cookieOffNonce + nonce24Len // 28

	// CookieReplySize is the exact length of a cookie reply.
	CookieReplySize = cookieOffSealed + cookieLen + TagSize // 60
)

// Data packet: header | receiver index | counter | sealed payload. The tunnel
// builds and opens these; they are defined here so the wire lives in one place.
const (
	DataOffReceiver = HeaderLen // 4: receiver index, little-endian uint32
	DataOffCounter  = 8         // 8: counter, little-endian uint64, also the AEAD nonce
	DataOffPayload  = 16        // 16: ciphertext || tag
	// MessageDataHeaderLen is the length of the data header before the sealed payload.
	MessageDataHeaderLen = DataOffPayload
	// MinDataSize is a keepalive: a header and the tag of an empty payload.
	MinDataSize = MessageDataHeaderLen + TagSize
)

// Cipher offer bits (initiation) and acceptable-set bits (response).
const (
	offerChaCha20Poly1305 = 1 << 0
	offerAES256GCM        = 1 << 1
)

// Noise and key-derivation labels.
const (
	noiseProtocolName = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s" // what flynn/noise builds from the config below
	prologue          = "stunnel v1"
	labelMAC1         = "mac1----"
	labelCookie       = "cookie--"
	labelSessionID    = "stunnel session id"
	labelKeyI2R       = "stunnel v1 i2r"
	labelKeyR2I       = "stunnel v1 r2i"
	labelPSKTag       = "stunnel v1 psk tag"
)

// Timing.
const (
	// CookieSecretLifetime: the responder's cookie secret rotates this often.
	CookieSecretLifetime = 120 * time.Second
	// CookieLifetime: an initiator stops using a cookie this long after receiving it.
	CookieLifetime = 120 * time.Second
	// InitiationMinInterval: a responder accepts at most one initiation per peer per interval.
	InitiationMinInterval = 20 * time.Millisecond
	// LoadHoldTime: the responder stays "under load" this long after the pending count drops.
	LoadHoldTime = time.Second
	// Per-source token bucket: RateLimitPerSecond initiations per second, bursts of RateLimitBurst.
	RateLimitPerSecond = 20
	RateLimitBurst     = 5
	// rateLimitMaxEntries bounds the token-bucket table (about 1 MiB).
	rateLimitMaxEntries = 16384
)
