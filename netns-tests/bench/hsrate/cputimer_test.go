package hsrate

import (
	"time"
)

const (
	// identities is how many initiators take turns; configured is how many
	// peers the responder knows (the rest have made-up keys).
	identities = 256
	configured = 1000
	// batch is how many initiations are prepared, untimed, before the
	// responder answers them, timed.
	batch = 64
	// spacing is how long an identity rests between two initiations.
	spacing = 25 * time.Millisecond
)

// turns hands out identities round robin, each at most once per spacing.
type turns struct {
	next int
	last [identities]time.Time // when each identity's last initiation was answered
}

// take returns the next identity, after sleeping (untimed) until it may
// initiate again.
func (r *turns) take() int {
	i := r.next
	r.next = (r.next + 1) % identities
	if d := spacing - time.Since(r.last[i]); d > 0 {
		time.Sleep(d)
	}
	return i
}

// answered records that the identities in ids were answered now.
func (r *turns) answered(ids []int) {
	now := time.Now()
	for _, i := range ids {
		r.last[i] = now
	}
}
