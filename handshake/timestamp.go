package handshake

import (
	"encoding/binary"
	"sync"
	"time"
)

// tai64n is a TAI64N label: 8 bytes big-endian seconds since 1970 TAI plus
// 2^62, then 4 bytes big-endian nanoseconds. Byte order makes bytes.Compare
// a time comparison.
type tai64n [tai64nLen]byte

// tai64Base is 2^62 plus the 10 s TAI-UTC offset of 1970, as in WireGuard.
const tai64Base = uint64(0x400000000000000a)

func tai64nFromUnixNano(ns int64) tai64n {
	var t tai64n
	binary.BigEndian.PutUint64(t[:8], tai64Base+uint64(ns/1e9))
	binary.BigEndian.PutUint32(t[8:], uint32(ns%1e9))
	return t
}

// stampClock makes initiation timestamps grow within this process even when
// the wall clock steps back (NTP, a VM resume): each stamp is
// max(previous + 1 ns, now). A responder rejects a stamp that does not grow,
// so without this a clock step would lock us out until the clock caught up.
// Across restarts stamps rely on the wall clock, as in WireGuard.
var stampClock struct {
	mu   sync.Mutex
	last int64 // guarded by mu: Unix nanoseconds of the last stamp issued
}

func nextTimestamp(now time.Time) tai64n {
	ns := now.UnixNano()
	if ns < 0 {
		ns = 0 // a clock before 1970 is broken; keep the encoding valid
	}
	stampClock.mu.Lock()
	if ns <= stampClock.last {
		ns = stampClock.last + 1
	}
	stampClock.last = ns
	stampClock.mu.Unlock()
	return tai64nFromUnixNano(ns)
}
