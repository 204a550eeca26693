package tunnel

import "time"

// Status is what `stunnel show --json` prints for one interface. Its JSON
// field names are a stable interface for scripts and the netns tests: add
// fields, never rename or remove them.
type Status struct {
	Name       string       `json:"name"`        // TUN device name
	PeerID     string       `json:"peer_id"`     // our own ID
	PublicKey  string       `json:"public_key"`  // our public key, base64
	ListenPort int          `json:"listen_port"` // UDP port actually bound
	Peers      []PeerStatus `json:"peers"`
	// Drops that cannot be charged to a known peer (unknown receiver index,
	// bad mac1, malformed handshake, rate limited...), by reason.
	Drops map[string]uint64 `json:"drops"`
	// Refusals are handshakes we refused from a claimed peer ID, newest
	// first, bounded in length; "unknown peer id" and "key mismatch" land here.
	Refusals []Refusal `json:"refusals"`
	// ResumptionsRefused counts refused resumptions by reason, including
	// those whose ticket did not open (so no peer can be named).
	ResumptionsRefused map[string]uint64 `json:"resumptions_refused,omitempty"`
	// TicketKeys is the session-ticket key ring, empty when resumption is off.
	TicketKeys []TicketKeyStatus `json:"ticket_keys,omitempty"`
	// Directory is the etcd peer directory's state; absent without [directory].
	Directory *DirectoryStatus `json:"directory,omitempty"`
	// TicketRing is the etcd ticket-key ring's state; absent unless [tickets] ring = "etcd".
	TicketRing *TicketRingStatus `json:"ticket_ring,omitempty"`
	// StaticKey is our static key when it is in a PKCS#11 token; absent
	// for a key in the config.
	StaticKey *StaticKeyStatus `json:"static_key,omitempty"`
}

// StaticKeyStatus is a static key in a PKCS#11 token (pkcs11key.Key).
type StaticKeyStatus struct {
	URI string `json:"uri"` // the pkcs11: URI it was opened with, in canonical form (pkcs11key.URI.String; no secret in it)
	// Origin: "generated" (in the token, could never leave it),
	// "imported", "extractable_once" or "unknown"; anything but
	// "generated" means a copy may exist outside the token
	// (pkcs11key.Origin).
	Origin string `json:"origin"`
	// Hung: a call into the token has not returned within its deadline;
	// handshakes fail at once until it does (pkcs11key/worker.go).
	Hung bool `json:"hung"`
	// Unanswered counts token operations that failed because the token
	// did not answer in time.
	Unanswered uint64 `json:"unanswered"`
}

// PeerStatus is one configured peer.
type PeerStatus struct {
	ID            string     `json:"id"`
	PublicKey     string     `json:"public_key"`
	Endpoint      string     `json:"endpoint"` // current ip:port, "" if not known yet
	AllowedIPs    []string   `json:"allowed_ips"`
	LastHandshake *time.Time `json:"last_handshake"` // null if never
	Handshakes    uint64     `json:"handshakes"`     // completed handshakes (either role)
	SessionID     string     `json:"session_id"`     // hex of the current session's ID, "" if none
	Cipher        string     `json:"cipher"`         // current session's AEAD, "" if none
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	RxPackets     uint64     `json:"rx_packets"`
	TxPackets     uint64     `json:"tx_packets"`
	// Drops by reason: no_route is charged at interface level; here:
	// no_key, auth_failed, replayed, key_expired, source_not_allowed,
	// malformed, queue_full, handshake_failed, no_endpoint.
	Drops     map[string]uint64 `json:"drops"`
	LastError string            `json:"last_error"` // why the last handshake failed, "" if it did not
	// CookieReplies counts cookie replies taken from this peer: it was
	// under load and asked us to prove our address before it does curve work.
	CookieReplies uint64 `json:"cookie_replies"`
	// HandshakesResumed counts, of Handshakes, the resumptions (session
	// tickets: no static-key work).
	HandshakesResumed uint64 `json:"handshakes_resumed"`
	// Ticket is the session ticket this peer gave us, if we hold one.
	Ticket *TicketStatus `json:"ticket,omitempty"`
	// ResumptionsRefused counts this peer's resumptions we refused, by reason
	// ("ticket expired", "ticket reused", "reauth required", ...).
	ResumptionsRefused map[string]uint64 `json:"resumptions_refused,omitempty"`
	// StandbyEndpoints are the configured endpoints of the peer's group not
	// in use, in the order a failover tries them.
	StandbyEndpoints []string `json:"standby_endpoints,omitempty"`
	// Failovers counts moves to the next endpoint after failover_after of silence.
	Failovers uint64 `json:"failovers"`
	// Restored: the current session came back from the state file.
	Restored bool `json:"restored"`
}

// TicketStatus is a held ticket's age and expiry (never its bytes).
type TicketStatus struct {
	Received time.Time `json:"received"`
	Expires  time.Time `json:"expires"`
}

// TicketKeyStatus is one ticket key of the interface's ring, by name.
type TicketKeyStatus struct {
	Name         string    `json:"name"`  // hex of the key name (not secret)
	State        string    `json:"state"` // "encrypt-decrypt", "decrypt-only"
	EncryptUntil time.Time `json:"encrypt_until"`
	End          time.Time `json:"end"` // erased then
}

// Refusal is one refused handshake source, by the peer ID it claimed.
type Refusal struct {
	PeerID   string    `json:"peer_id"`
	Reason   string    `json:"reason"`   // "unknown peer id", "key mismatch", "cipher mismatch: ..."
	Endpoint string    `json:"endpoint"` // where it came from
	Count    uint64    `json:"count"`
	Last     time.Time `json:"last"`
}

// Drop reasons, the keys of the Drops maps.
const (
	DropNoRoute          = "no_route"
	DropNoKey            = "no_key"
	DropAuthFailed       = "auth_failed"
	DropReplayed         = "replayed"
	DropSourceNotAllowed = "source_not_allowed"
	DropMalformed        = "malformed"
	DropUnknownIndex     = "unknown_index"
	DropQueueFull        = "queue_full"
	DropBadMAC1          = "bad_mac1"
	DropRateLimited      = "rate_limited"
	DropHandshakeFailed  = "handshake_failed"
	// DropNoEndpoint: a packet had a key but no address to go to (a
	// roaming peer that has not contacted us since its endpoint was lost).
	DropNoEndpoint = "no_endpoint"
	// DropKeyExpired: a packet authenticated under a key past reject_after
	// or already retired (zeroed, saved to the state file). Not counted as
	// replayed: a replay suggests an attack, this only a late packet or a
	// peer still sending under a key it should have renewed.
	DropKeyExpired = "key_expired"
)
