//go:build race

package directory

// raceEnabled: the race detector makes encoding the largest disk cache
// (200 MiB of JSON) take minutes, so that test shrinks under -race.
const raceEnabled = true
