package tunnel

import (
	"sync/atomic"
)

// dropReason indexes the per-peer and per-interface drop counters; the names
// are the keys of Status.Drops.
type dropReason uint8

const (
	dropNoRoute dropReason = iota
	dropNoKey
	dropAuthFailed
	dropReplayed
	dropSourceNotAllowed
	dropMalformed
	dropUnknownIndex
	dropQueueFull
	dropBadMAC1
	dropRateLimited
	dropHandshakeFailed
	dropNoEndpoint
	dropKeyExpired
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNoRoute, DropNoKey, DropAuthFailed, DropReplayed, DropSourceNotAllowed,
	DropMalformed, DropUnknownIndex, DropQueueFull, DropBadMAC1, DropRateLimited,
	DropHandshakeFailed, DropNoEndpoint, DropKeyExpired,
}

// dropCounters are lock-free counters, one per reason.
type dropCounters [numDropReasons]atomic.Uint64

func (c *dropCounters) add(r dropReason, n uint64) { c[r].Add(n) }

func (c *dropCounters) snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range c {
		if v := c[i].Load(); v != 0 {
			m[dropNames[i]] = v
		}
	}
	return m
}
