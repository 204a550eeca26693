package netnstests

import "time"

// The JSON of `stunnel show --json`, decoded into the tests' own types rather
// than tunnel.Status: the field names are the stable contract scripts rely on
// (tunnel/status.go), and these tests check that contract from outside.

type status struct {
	Name       string            `json:"name"`
	PeerID     string            `json:"peer_id"`
	PublicKey  string            `json:"public_key"`
	ListenPort int               `json:"listen_port"`
	Peers      []peerStatus      `json:"peers"`
	Drops      map[string]uint64 `json:"drops"`
	Refusals   []refusalStatus   `json:"refusals"`
}

type peerStatus struct {
	ID            string            `json:"id"`
	PublicKey     string            `json:"public_key"`
	Endpoint      string            `json:"endpoint"`
	AllowedIPs    []string          `json:"allowed_ips"`
	LastHandshake *time.Time        `json:"last_handshake"`
	Handshakes    uint64            `json:"handshakes"`
	SessionID     string            `json:"session_id"`
	Cipher        string            `json:"cipher"`
	RxBytes       uint64            `json:"rx_bytes"`
	TxBytes       uint64            `json:"tx_bytes"`
	RxPackets     uint64            `json:"rx_packets"`
	TxPackets     uint64            `json:"tx_packets"`
	Drops         map[string]uint64 `json:"drops"`
	LastError     string            `json:"last_error"`

	HandshakesResumed uint64 `json:"handshakes_resumed"`
	Restored          bool   `json:"restored"`
	Ticket            *struct {
		Received, Expires time.Time
	} `json:"ticket"`
	StandbyEndpoints []string `json:"standby_endpoints"`
	Failovers        uint64   `json:"failovers"`
}

type refusalStatus struct {
	PeerID   string    `json:"peer_id"`
	Reason   string    `json:"reason"`
	Endpoint string    `json:"endpoint"`
	Count    uint64    `json:"count"`
	Last     time.Time `json:"last"`
}

// Drop reasons (keys of the drops maps), as in tunnel/status.go.
const (
	dropNoKey            = "no_key"
	dropReplayed         = "replayed"
	dropSourceNotAllowed = "source_not_allowed"
)
