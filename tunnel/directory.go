package tunnel

import "time"

// DirectoryStatus is the peer directory's part of Status, filled in by the
// daemon (the data plane only ever sees the merged peer list through
// Reload). Field names are a stable interface like Status's.
type DirectoryStatus struct {
	State          string    `json:"state"`  // "starting", "connected", "retrying"
	Source         string    `json:"source"` // "etcd", "cache" (disk, from an earlier run), "" (nothing yet)
	Revision       int64     `json:"revision"`
	LastSync       time.Time `json:"last_sync"`
	Peers          int       `json:"peers"`           // valid records in the local copy
	Applied        int       `json:"applied"`         // of those, in use: as peers, or as a [[peer]] of the file with the record's key (the rest conflict with the file or each other)
	Malformed      int       `json:"malformed"`       // records skipped now
	MalformedTotal uint64    `json:"malformed_total"` // since start
	LastError      string    `json:"last_error"`
}
