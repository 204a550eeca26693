// Package directory keeps a local copy of a peer directory held in etcd:
// one JSON record per peer ID under a key prefix, read once at a revision
// and kept current by a watch from the next revision on. Lookups never
// touch the network; when etcd is away the last good copy (in memory, or
// sealed on disk from an earlier run) stays in use and the watcher retries
// with backoff. It knows nothing of the data plane: the daemon turns the
// peer list it delivers into a reload.
package directory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"stunnel/conf"
	"stunnel/handshake"
)

// RecordVersion is the version of the record format this code writes and
// the only one it reads. A record of another version is skipped as
// malformed, so a newer writer never feeds an older reader fields it would
// misread.
const RecordVersion = 1

// MaxRecordSize bounds one record: a key, a few dozen prefixes and an
// endpoint fit in well under 4 KiB.
const MaxRecordSize = 16 << 10

// MaxRecords is the largest directory this code is sized for
// (docs/CONFIGURATION.md): the disk cache of MaxRecords records of
// MaxRecordSize bytes each is written and read back whole (maxCacheFile),
// and TestDirectoryScale measures a daemon with that many. A larger
// directory still works from etcd, but its cache may be refused at start.
const MaxRecords = 10000

// Record is the JSON stored at PREFIX + "peers/" + ID (docs/CONFIGURATION.md,
// "Peer directory in etcd"). Field names are a stable interface: etcdctl
// users write them by hand.
type Record struct {
	Version             int      `json:"version"`
	PublicKey           string   `json:"public_key"`
	AllowedIPs          []string `json:"allowed_ips"`
	Endpoint            string   `json:"endpoint,omitempty"`
	PersistentKeepalive string   `json:"persistent_keepalive,omitempty"`
}

// PeersDir and EndpointsDir are the two key spaces below a prefix: records
// written by operators, and endpoints that hosts publish about themselves
// under a lease.
const (
	PeersDir     = "peers/"
	EndpointsDir = "endpoints/"
)

// PeerKey is the etcd key of id's record.
func PeerKey(prefix, id string) string { return prefix + PeersDir + id }

// PeerIDFromKey returns the peer ID a record key names: the key's last
// part, right below PREFIX peers/. A deeper key is no record (see
// deeperKey).
func PeerIDFromKey(prefix, key string) (string, bool) {
	return idBelow(prefix+PeersDir, key)
}

// EndpointIDFromKey returns the peer ID a published endpoint's key names,
// as PeerIDFromKey does for records.
func EndpointIDFromKey(prefix, key string) (string, bool) {
	return idBelow(prefix+EndpointsDir, key)
}

func idBelow(dir, key string) (string, bool) {
	id, ok := strings.CutPrefix(key, dir)
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// errDeeperKey is why a key below PREFIX peers/ or endpoints/ but deeper
// than an ID is not read. Such a key is most likely another fleet's, whose
// prefix lies below ours (conf refuses that now; an older stunnel did
// not): taking its records for ours would give this fleet that fleet's
// peers. So an ID has no "/", and a key's ID is its last part, as in a
// directory tree.
var errDeeperKey = errors.New("key is below PREFIX peers/ID or endpoints/ID, not one of them (an ID has no \"/\"): " +
	"the key of a fleet whose prefix is nested in this one, or a record at the wrong key")

// deeperKey says whether key is below prefix's records or endpoints but
// deeper than an ID.
func deeperKey(prefix, key string) bool {
	for _, dir := range []string{prefix + PeersDir, prefix + EndpointsDir} {
		if rest, ok := strings.CutPrefix(key, dir); ok && strings.Contains(rest, "/") {
			return true
		}
	}
	return false
}

// CheckRecordID refuses an ID that could not name a record: the ID is the
// key's last part, so it is not empty (PREFIX peers/ itself is no record,
// and `directory delete ""` is bad input, not a missing record) and has no
// "/".
func CheckRecordID(id string) error {
	if id == "" {
		return errors.New("the peer ID is empty; a record's ID is the last part of its key, PREFIX peers/ID")
	}
	if strings.Contains(id, "/") {
		return fmt.Errorf("id %s has a \"/\": a record's ID is the last part of its key, PREFIX peers/ID; use another character, such as \"-\"", conf.QuoteID(id))
	}
	return nil
}

// ParseRecord reads the record stored for id, strictly: unknown fields,
// another version, trailing data or anything [[peer]] would refuse make it
// malformed. The error names the problem, never the record's bytes.
func ParseRecord(id string, data []byte) (conf.Peer, error) {
	if len(data) > MaxRecordSize {
		return conf.Peer{}, fmt.Errorf("record is %d bytes; at most %d", len(data), MaxRecordSize)
	}
	if err := exactFields(data, "version", "public_key", "allowed_ips", "endpoint", "persistent_keepalive"); err != nil {
		return conf.Peer{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return conf.Peer{}, fmt.Errorf("record is not the JSON of format version %d: %v", RecordVersion, err)
	}
	if dec.More() {
		return conf.Peer{}, errors.New("record has data after its JSON object")
	}
	if r.Version != RecordVersion {
		return conf.Peer{}, fmt.Errorf("record version %d is not %d, the version this stunnel reads", r.Version, RecordVersion)
	}
	p := conf.Peer{ID: id, Endpoint: r.Endpoint}
	k, err := handshake.ParsePublicKey(r.PublicKey)
	if err != nil {
		return conf.Peer{}, fmt.Errorf("public_key: %v", err)
	}
	p.PublicKey = k
	for _, s := range r.AllowedIPs {
		pfx, err := conf.ParseAllowedIP(s)
		if err != nil {
			return conf.Peer{}, err
		}
		p.AllowedIPs = append(p.AllowedIPs, pfx)
	}
	if r.PersistentKeepalive != "" {
		d, err := time.ParseDuration(r.PersistentKeepalive)
		if err != nil {
			return conf.Peer{}, fmt.Errorf("persistent_keepalive %q is not a duration such as \"25s\"", r.PersistentKeepalive)
		}
		p.PersistentKeepalive = d
	}
	if err := conf.ValidatePeer(p); err != nil {
		return conf.Peer{}, err
	}
	return p, nil
}

// EncodeRecord is the record for p, as `stunnel directory put` writes it.
// p is validated first, so what is written is what every reader accepts.
func EncodeRecord(p conf.Peer) ([]byte, error) {
	if err := conf.ValidatePeer(p); err != nil {
		return nil, err
	}
	if err := CheckRecordID(p.ID); err != nil {
		return nil, err
	}
	r := Record{Version: RecordVersion, PublicKey: p.PublicKey.String(), Endpoint: p.Endpoint}
	for _, pfx := range p.AllowedIPs {
		r.AllowedIPs = append(r.AllowedIPs, pfx.String())
	}
	if p.PersistentKeepalive > 0 {
		r.PersistentKeepalive = p.PersistentKeepalive.String()
	}
	return json.Marshal(r)
}

// EndpointRecord is what a host publishes about itself at
// PREFIX + "endpoints/" + ID, bound to a lease so it disappears with the
// host. It carries only an endpoint: a host never writes its own key or
// allowed IPs. An operator's record with an endpoint takes precedence.
type EndpointRecord struct {
	Version  int    `json:"version"`
	Endpoint string `json:"endpoint"`
}

// EndpointKey is the etcd key of id's published endpoint.
func EndpointKey(prefix, id string) string { return prefix + EndpointsDir + id }

// ParseEndpointRecord reads a published endpoint, as strictly as a record.
func ParseEndpointRecord(data []byte) (string, error) {
	if len(data) > MaxRecordSize {
		return "", fmt.Errorf("endpoint record is %d bytes; at most %d", len(data), MaxRecordSize)
	}
	if err := exactFields(data, "version", "endpoint"); err != nil {
		return "", fmt.Errorf("endpoint record: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r EndpointRecord
	if err := dec.Decode(&r); err != nil || dec.More() {
		return "", fmt.Errorf("endpoint record is not the JSON of format version %d", RecordVersion)
	}
	if r.Version != RecordVersion {
		return "", fmt.Errorf("endpoint record version %d is not %d", r.Version, RecordVersion)
	}
	if err := conf.CheckEndpoint(r.Endpoint); err != nil {
		return "", fmt.Errorf("endpoint %q: %v", r.Endpoint, err)
	}
	return r.Endpoint, nil
}

// exactFields refuses a JSON object that names a field other than as
// written in names, or names one twice. encoding/json matches names
// case-insensitively and lets a repeated name overwrite the first, so
// {"public_key": A, "PUBLIC_KEY": B} would be read as B by every host while
// an operator reading the record with etcdctl or jq sees A. Anything that
// is not an object is left to the strict decode that follows.
func exactFields(data []byte, names ...string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := make(map[string]bool, len(names))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := t.(string)
		switch {
		case !slices.Contains(names, name):
			return fmt.Errorf("record has the field %q, which is not one of %s (names are case-sensitive)", name, strings.Join(names, ", "))
		case seen[name]:
			return fmt.Errorf("record has the field %q twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}
