package tunnel

import "time"

// TicketRingStatus is the etcd ticket-key ring's part of Status ([tickets]
// ring = "etcd"), filled in by the daemon. Field names are a stable
// interface like Status's.
type TicketRingStatus struct {
	Role         string    `json:"role"`    // "rotator" (this gateway adds and deletes keys), "follower", "connecting"
	Rotator      string    `json:"rotator"` // the elected rotator's identity (host name and pid), "" if unknown
	State        string    `json:"state"`   // the watch: "starting", "connected", "retrying"
	Keys         int       `json:"keys"`    // records that opened under the group secret
	Refused      int       `json:"refused"` // records that did not open, now
	RefusedTotal uint64    `json:"refused_total"`
	Added        uint64    `json:"added"`   // keys this gateway added while rotator
	Deleted      uint64    `json:"deleted"` // ended records this gateway deleted while rotator
	LastSync     time.Time `json:"last_sync"`
	LastError    string    `json:"last_error"`
}
