//go:build race

package main

// raceEnabled: the race detector allows 8128 live goroutines, and each
// peer has two, so the scale test shrinks under -race.
const raceEnabled = true
